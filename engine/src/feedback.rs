//! Feedback from mail providers: MailJet's event webhook, read and applied to the ledger and the
//! suppression lists.
//!
//! MailJet posts one event (a JSON object) or a batch of them (an array), and posts it again until
//! it gets a 200, for 24 hours: applying a batch twice changes nothing (see
//! [`messages::apply_feedback`]). An event finds its ledger row by `CustomID` (the row id the
//! message was sent with) or, without one, by `MessageID` (the provider id recorded when it was
//! sent). The address suppressed is the row's, on the list of the row's owner only.
//!
//! What each event does:
//! - `bounce` with `hard_bounce`: the row becomes `bounced`, the address is suppressed
//!   (`hard_bounce`); a soft bounce (a full mailbox, a server down) marks the row only.
//! - `blocked` (MailJet did not even try): the row becomes `bounced`; the address is suppressed
//!   only when MailJet blames the recipient (`error_related_to` is `recipient`: user unknown,
//!   mailbox inactive, blacklisted, spam reporter), except a full mailbox (`quota exceeded`),
//!   which passes. Blocks blamed on the domain, the content, MailJet or a system issue say
//!   nothing for good about the address, so it is not suppressed.
//! - `spam`: the address is suppressed (`complaint`); the row stays as it is (it was delivered).
//! - `unsub`: the address is suppressed (`unsubscribed`).
//! - anything else (`sent`, `open`, `click`, …): counted and ignored.

use borcelle_store::messages::{self, Feedback};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::Result;

/// One MailJet event, the fields Borcelle reads (the others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct MailjetEvent {
    /// `bounce`, `blocked`, `spam`, `unsub`, `sent`, `open`, `click`…
    pub event: String,
    /// Unix time of the event.
    #[serde(default)]
    pub time: Option<i64>,
    /// The recipient, as MailJet names it (the row's own address is what gets suppressed).
    #[serde(default)]
    pub email: Option<String>,
    /// MailJet's id of the message.
    #[serde(rename = "MessageID", default)]
    pub message_id: Option<u64>,
    #[serde(rename = "Message_GUID", default)]
    pub message_guid: Option<String>,
    /// What the message was sent with: our ledger row id (a UUID); anything else is ignored.
    #[serde(rename = "CustomID", default)]
    pub custom_id: Option<String>,
    /// `bounce`: whether the failure is permanent.
    #[serde(default)]
    pub hard_bounce: Option<bool>,
    /// `bounce`, `blocked`: whom MailJet blames (`recipient`, `domain`, `spam`, `system`, `mailjet`).
    #[serde(default)]
    pub error_related_to: Option<String>,
    /// `bounce`, `blocked`: MailJet's short reason (`user unknown`, `quota exceeded`…).
    #[serde(default)]
    pub error: Option<String>,
    /// `bounce`: the receiving server's words.
    #[serde(default)]
    pub comment: Option<String>,
    /// `spam`: the feedback loop that reported it.
    #[serde(default)]
    pub source: Option<String>,
}

/// A body that is not a MailJet event or batch of events: `path` locates the offending value
/// (`[3].MessageID`), empty for the body as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct MalformedEvents {
    pub path: String,
    pub message: String,
}

/// Reads a webhook body: one event (an object) or a batch (an array of objects).
pub fn parse_mailjet(body: &[u8]) -> Result<Vec<MailjetEvent>, MalformedEvents> {
    let malformed = |path: String, err: serde_json::Error| match err.classify() {
        serde_json::error::Category::Data => MalformedEvents { path, message: err.to_string() },
        _ => MalformedEvents { path: String::new(), message: format!("not valid JSON: {err}") },
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let events = match body.trim_ascii_start().first() {
        Some(b'[') => serde_path_to_error::deserialize::<_, Vec<MailjetEvent>>(&mut deserializer),
        Some(b'{') => serde_path_to_error::deserialize::<_, MailjetEvent>(&mut deserializer).map(|event| vec![event]),
        _ => {
            return Err(MalformedEvents {
                path: String::new(),
                message: "expected a MailJet event (a JSON object) or a batch of them (a JSON array)".to_owned(),
            });
        }
    }
    .map_err(|err| malformed(err.path().to_string(), err.into_inner()))?;
    deserializer.end().map_err(|err| malformed(String::new(), err))?;
    Ok(events)
}

/// What one batch did, for the log and the answer to MailJet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedbackSummary {
    /// Events in the batch.
    pub events: u64,
    /// Bounces, blocks, complaints and unsubscribes whose message was found.
    pub matched: u64,
    /// Bounces, blocks, complaints and unsubscribes naming no message of this server.
    pub unknown: u64,
    /// Events of other kinds (`sent`, `open`, `click`…), which change nothing.
    pub ignored: u64,
    /// Ledger rows that became `bounced` (none when the batch is a replay).
    pub bounced: u64,
    /// Addresses added to a suppression list (none when the batch is a replay).
    pub suppressed: u64,
}

/// The report an event makes, if it is of a kind that changes anything; `None` for the others.
/// A report may name no message (no `CustomID` of ours, no `MessageID`): it then finds nothing.
pub fn report(event: &MailjetEvent) -> Option<Feedback> {
    let reason = || {
        let words: Vec<&str> = [event.error.as_deref(), event.comment.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() { "no reason given".to_owned() } else { words.join(" ") }
    };
    let (bounced, suppress, detail) = match event.event.as_str() {
        "bounce" if event.hard_bounce == Some(true) => {
            (true, Some("hard_bounce"), format!("hard bounce: {}", reason()))
        }
        "bounce" => (true, None, format!("soft bounce: {}", reason())),
        "blocked" => {
            let blames_recipient =
                event.error_related_to.as_deref().is_some_and(|r| r.eq_ignore_ascii_case("recipient"));
            let mailbox_full = event.error.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case("quota exceeded"));
            let suppress = (blames_recipient && !mailbox_full).then_some("hard_bounce");
            let blamed = event.error_related_to.as_deref().unwrap_or("unknown");
            (true, suppress, format!("blocked ({blamed}): {}", reason()))
        }
        "spam" => {
            let source = event.source.as_deref().map(str::trim).filter(|s| !s.is_empty());
            let detail = source.map_or_else(|| "marked as spam".to_owned(), |s| format!("marked as spam (via {s})"));
            (false, Some("complaint"), detail)
        }
        "unsub" => (false, Some("unsubscribed"), "unsubscribed through MailJet".to_owned()),
        _ => return None,
    };
    let ledger_id = event.custom_id.as_deref().and_then(|id| Uuid::parse_str(id.trim()).ok());
    Some(Feedback { ledger_id, provider_id: event.message_id.map(|id| id.to_string()), bounced, suppress, detail })
}

/// Applies a batch in one statement and says what it did.
pub async fn apply_mailjet(db: impl PgExecutor<'_>, events: &[MailjetEvent]) -> Result<FeedbackSummary> {
    let reports: Vec<Feedback> = events.iter().filter_map(report).collect();
    let relevant = reports.len() as u64;
    let findable: Vec<Feedback> =
        reports.into_iter().filter(|r| r.ledger_id.is_some() || r.provider_id.is_some()).collect();
    let applied = messages::apply_feedback(db, &findable).await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let matched = count(applied.matched).min(relevant);
    Ok(FeedbackSummary {
        events: events.len() as u64,
        matched,
        unknown: relevant - matched,
        ignored: events.len() as u64 - relevant,
        bounced: count(applied.bounced),
        suppressed: count(applied.suppressed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    fn event(json: serde_json::Value) -> MailjetEvent {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_single_event_and_a_batch_are_both_read_with_unknown_fields_ignored() {
        let one = br#"{"event":"bounce","time":1430812195,"MessageID":13792286917004336,"Message_GUID":"1ab23cd4-e567-8901-2345-6789f0gh1i2j","email":"bounce@mailjet.com","mj_campaign_id":0,"mj_contact_id":0,"customcampaign":"","CustomID":"helloworld","Payload":"","blocked":false,"hard_bounce":true,"error_related_to":"recipient","error":"user unknown"}"#;
        let events = parse_mailjet(one).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message_id, Some(13_792_286_917_004_336), "beyond 2^53, exact");
        assert_eq!(events[0].hard_bounce, Some(true));

        let batch = br#" [{"event":"open","time":1,"MessageID":1,"ip":"127.0.0.1","geo":"FR","agent":"x"},
                          {"event":"unsub","time":2,"MessageID":2,"CustomID":"","mj_list_id":1}] "#;
        let events = parse_mailjet(batch).unwrap();
        assert_eq!(events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["open", "unsub"]);
        assert!(parse_mailjet(b"[]").unwrap().is_empty());
    }

    #[test]
    fn a_malformed_body_names_what_is_wrong() {
        let wrong_type = parse_mailjet(br#"[{"event":"bounce"},{"event":"spam","MessageID":"12"}]"#).unwrap_err();
        assert_eq!(wrong_type.path, "[1].MessageID", "{wrong_type}");
        assert!(wrong_type.to_string().starts_with("[1].MessageID: invalid type"), "{wrong_type}");

        let no_kind = parse_mailjet(br#"{"MessageID":12}"#).unwrap_err();
        assert!(no_kind.to_string().contains("missing field `event`"), "{no_kind}");
        let flag = parse_mailjet(br#"{"event":"bounce","hard_bounce":"yes"}"#).unwrap_err();
        assert_eq!(flag.path, "hard_bounce");

        let cut = parse_mailjet(br#"[{"event":"open"}"#).unwrap_err();
        assert!(cut.to_string().starts_with("not valid JSON: EOF"), "{cut}");
        for body in [&b""[..], b"42", b"\"bounce\"", b"{\"event\":\"open\"} {}", b"[1]"] {
            assert!(parse_mailjet(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn hard_and_soft_bounces_mark_the_row_and_only_hard_ones_suppress() {
        let hard = report(&event(serde_json::json!({
            "event": "bounce", "CustomID": ROW, "MessageID": 7, "hard_bounce": true,
            "error_related_to": "recipient", "error": "user unknown", "comment": "550 5.1.1 no such user"
        })))
        .unwrap();
        assert_eq!(hard.ledger_id, Some(Uuid::parse_str(ROW).unwrap()));
        assert_eq!(hard.provider_id.as_deref(), Some("7"));
        assert!(hard.bounced);
        assert_eq!(hard.suppress, Some("hard_bounce"));
        assert_eq!(hard.detail, "hard bounce: user unknown 550 5.1.1 no such user");

        let soft = report(&event(serde_json::json!({
            "event": "bounce", "CustomID": ROW, "hard_bounce": false, "error": "quota exceeded"
        })))
        .unwrap();
        assert!(soft.bounced);
        assert_eq!(soft.suppress, None);
        assert_eq!(soft.detail, "soft bounce: quota exceeded");
    }

    #[test]
    fn a_block_suppresses_only_when_the_recipient_is_to_blame() {
        let blocked = |related: &str, error: &str| {
            report(&event(serde_json::json!({
                "event": "blocked", "CustomID": ROW, "error_related_to": related, "error": error
            })))
            .unwrap()
        };
        let unknown_user = blocked("recipient", "user unknown");
        assert!(unknown_user.bounced);
        assert_eq!(unknown_user.suppress, Some("hard_bounce"));
        assert_eq!(unknown_user.detail, "blocked (recipient): user unknown");
        for (related, error) in [
            ("recipient", "quota exceeded"),
            ("domain", "no mail host"),
            ("spam", "content blocked"),
            ("mailjet", "preblocked"),
        ] {
            let report = blocked(related, error);
            assert!(report.bounced, "{related} {error}");
            assert_eq!(report.suppress, None, "{related} {error}");
        }
    }

    #[test]
    fn complaints_and_unsubscribes_suppress_without_touching_the_row_and_other_events_are_ignored() {
        let spam = report(&event(serde_json::json!({"event": "spam", "CustomID": ROW, "source": "JMRPP"}))).unwrap();
        assert_eq!((spam.bounced, spam.suppress), (false, Some("complaint")));
        assert_eq!(spam.detail, "marked as spam (via JMRPP)");
        let unsub = report(&event(serde_json::json!({"event": "unsub", "CustomID": ROW}))).unwrap();
        assert_eq!((unsub.bounced, unsub.suppress), (false, Some("unsubscribed")));
        for kind in ["sent", "open", "click", "something-new"] {
            assert!(report(&event(serde_json::json!({"event": kind, "CustomID": ROW}))).is_none(), "{kind}");
        }
    }

    #[test]
    fn a_custom_id_that_is_not_a_row_id_is_ignored_and_the_message_id_stays() {
        let report =
            report(&event(serde_json::json!({"event": "unsub", "CustomID": "helloworld", "MessageID": 42}))).unwrap();
        assert_eq!(report.ledger_id, None);
        assert_eq!(report.provider_id.as_deref(), Some("42"));
    }
}
