//! Reading MailJet's answer to one `POST /v3.1/send`: one classified result per message sent.
//!
//! MailJet processes the messages of a call one by one: when any of them fails the call answers
//! 400, yet the others are sent all the same, so a message's own `Status` decides its result,
//! never the call's status (taking a 400 for the whole batch would send the accepted ones again).

use reqwest::StatusCode;
use serde::Deserialize;

use crate::{Delivery, MailError};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendResponse {
    #[serde(default)]
    messages: Vec<MessageResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MessageResult {
    status: String,
    /// The `CustomID` the message was sent with (empty when it had none).
    #[serde(rename = "CustomID", default)]
    custom_id: Option<String>,
    #[serde(default)]
    to: Vec<RecipientResult>,
    #[serde(default)]
    errors: Vec<MessageErrorDetail>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecipientResult {
    /// A number (beyond 2^53: kept exact as read); what the event webhook's `MessageID` says.
    #[serde(rename = "MessageID")]
    message_id: Option<serde_json::Value>,
    #[serde(rename = "MessageUUID")]
    message_uuid: Option<String>,
}

impl RecipientResult {
    /// The id to record: `MessageID` (the events carry it), else `MessageUUID`.
    fn provider_id(self) -> Option<String> {
        let id = match self.message_id {
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            Some(serde_json::Value::String(text)) if !text.is_empty() => Some(text),
            _ => None,
        };
        id.or(self.message_uuid.filter(|uuid| !uuid.is_empty()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MessageErrorDetail {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    error_related_to: Vec<String>,
}

/// MailJet's code for "… is an invalid email address" (the same code also names a bad sender,
/// which `ErrorRelatedTo` tells apart).
const INVALID_ADDRESS: &str = "mj-0013";

impl MessageErrorDetail {
    /// The recipient's address itself is refused: it will never be deliverable.
    fn refuses_recipient(&self) -> bool {
        self.error_code.eq_ignore_ascii_case(INVALID_ADDRESS)
            && self.error_related_to.iter().any(|field| is_recipient_field(field))
    }

    fn describe(&self) -> String {
        if self.error_related_to.is_empty() {
            format!("{}: {}", self.error_code, self.error_message)
        } else {
            format!("{}: {} ({})", self.error_code, self.error_message, self.error_related_to.join(", "))
        }
    }
}

/// `To[0].Email`, `Cc[1].Email`, `Bcc`…: a field of a recipient (not `From`, `ReplyTo`, …).
fn is_recipient_field(field: &str) -> bool {
    let name = field.split(['[', '.']).next().unwrap_or_default();
    ["To", "Cc", "Bcc"].iter().any(|recipient| name.eq_ignore_ascii_case(recipient))
}

/// Turns MailJet's answer to a call into one result per message sent, in the order of
/// `custom_ids` (the `CustomID` each message was sent with).
///
/// Throttling and MailJet's own failures are transient and a refused API key permanent, for
/// every message of the call alike, as is a body that cannot be read. Otherwise each message has
/// its own result: accepted; [`MailError::Rejected`] when it is refused only because the
/// recipient's address is invalid (the engine suppresses the address for its sender); permanent
/// for every other per-message error (a sender not validated, a malformed field) and for a
/// message the answer says nothing about.
pub(super) fn read_answer(status: StatusCode, body: &str, custom_ids: &[&str]) -> Vec<Result<Delivery, MailError>> {
    let every = |error: MailError| vec![Err(error); custom_ids.len()];
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return every(MailError::Transient(format!("MailJet answered {status}: {}", snippet(body))));
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return every(MailError::Permanent(format!(
            "MailJet refused the API key or secret ({status}); check BORCELLE_MAILJET_API_KEY and BORCELLE_MAILJET_API_SECRET"
        )));
    }
    let parsed: SendResponse = match serde_json::from_str(body) {
        Ok(parsed) => parsed,
        Err(err) => {
            return every(MailError::Permanent(format!(
                "MailJet answered {status} with an unreadable body ({err}): {}",
                snippet(body)
            )));
        }
    };
    // Without any message result the body is a whole-call error (a malformed request): say it.
    let missing = if parsed.messages.is_empty() {
        format!("MailJet answered {status} without a message result: {}", snippet(body))
    } else {
        format!("MailJet answered {status} without a result for this message")
    };
    pair_results(parsed.messages, custom_ids)
        .into_iter()
        .map(|result| match result {
            Some(result) => result.into_delivery(),
            None => Err(MailError::Permanent(missing.clone())),
        })
        .collect()
}

/// Pairs MailJet's results with the messages sent: a result naming the `CustomID` of a message
/// goes to that message (to the one at its own position first, should two share the id); a
/// result naming none goes by its position. A message no result pairs with gets `None`; a result
/// naming an id that was not sent pairs with nothing (better no result than someone else's).
fn pair_results(results: Vec<MessageResult>, custom_ids: &[&str]) -> Vec<Option<MessageResult>> {
    let mut paired: Vec<Option<MessageResult>> = custom_ids.iter().map(|_| None).collect();
    let mut unnamed = Vec::new();
    for (position, result) in results.into_iter().enumerate() {
        let Some(id) = result.custom_id.as_deref().filter(|id| !id.is_empty()) else {
            unnamed.push((position, result));
            continue;
        };
        let free = |index: usize| custom_ids[index] == id && paired[index].is_none();
        let slot = (position < custom_ids.len() && free(position))
            .then_some(position)
            .or_else(|| (0..custom_ids.len()).find(|&index| free(index)));
        match slot {
            Some(index) => paired[index] = Some(result),
            None => tracing::warn!(custom_id = id, "MailJet answered for a message this call did not send"),
        }
    }
    // After the named ones, so that a result by position never takes a message's own result.
    for (position, result) in unnamed {
        if let Some(slot @ None) = paired.get_mut(position) {
            *slot = Some(result);
        }
    }
    paired
}

impl MessageResult {
    fn into_delivery(self) -> Result<Delivery, MailError> {
        if self.status == "success" {
            let provider_id = self
                .to
                .into_iter()
                .next()
                .and_then(RecipientResult::provider_id)
                .unwrap_or_else(|| "accepted".to_owned());
            return Ok(Delivery { provider_id });
        }
        let reasons: Vec<String> = self.errors.iter().map(MessageErrorDetail::describe).collect();
        let reason = if reasons.is_empty() { format!("status {}", self.status) } else { reasons.join("; ") };
        if !self.errors.is_empty() && self.errors.iter().all(MessageErrorDetail::refuses_recipient) {
            return Err(MailError::Rejected(format!("MailJet refused the recipient's address: {reason}")));
        }
        Err(MailError::Permanent(format!("MailJet rejected the message: {reason}")))
    }
}

fn snippet(body: &str) -> &str {
    let end = body.char_indices().nth(300).map_or(body.len(), |(i, _)| i);
    &body[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The result of a call that sent one message.
    fn interpret(status: StatusCode, body: &str) -> Result<Delivery, MailError> {
        let mut results = read_answer(status, body, &["m-1"]);
        assert_eq!(results.len(), 1);
        results.remove(0)
    }

    #[test]
    fn success_yields_the_message_id() {
        let body = r#"{"Messages":[{"Status":"success","To":[{"Email":"a@b.io","MessageUUID":"u-1","MessageID":576460,"MessageHref":"x"}]}]}"#;
        assert_eq!(interpret(StatusCode::OK, body).unwrap().provider_id, "576460");
    }

    #[test]
    fn a_message_id_beyond_the_doubles_is_kept_exact() {
        let body = r#"{"Messages":[{"Status":"success","To":[{"Email":"a@b.io","MessageUUID":"u-1","MessageID":288230379631515999}]}]}"#;
        assert_eq!(interpret(StatusCode::OK, body).unwrap().provider_id, "288230379631515999");
        let uuid_only = r#"{"Messages":[{"Status":"success","To":[{"Email":"a@b.io","MessageUUID":"u-1"}]}]}"#;
        assert_eq!(interpret(StatusCode::OK, uuid_only).unwrap().provider_id, "u-1");
    }

    #[test]
    fn an_invalid_recipient_address_is_a_rejection_and_explained() {
        let body = r#"{"Messages":[{"Status":"error","Errors":[{"ErrorIdentifier":"x","ErrorCode":"mj-0013","StatusCode":400,"ErrorMessage":"\"bad\" is an invalid email address.","ErrorRelatedTo":["To[0].Email"]}]}]}"#;
        let err = interpret(StatusCode::BAD_REQUEST, body).unwrap_err();
        assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
        assert!(err.to_string().contains("mj-0013"), "{err}");
        assert!(err.to_string().contains("To[0].Email"), "{err}");
    }

    #[test]
    fn other_per_message_errors_are_permanent() {
        for body in [
            // The same code about the sender: our configuration, not the recipient.
            r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"mj-0013","ErrorMessage":"\"x\" is an invalid email address.","ErrorRelatedTo":["From.Email"]}]}]}"#,
            r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"send-0008","ErrorMessage":"not an authorized sender","ErrorRelatedTo":["From"]}]}]}"#,
            r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"mj-0004","ErrorMessage":"Type mismatch","ErrorRelatedTo":["To"]}]}]}"#,
            // The recipient and something else: the something else is ours to fix.
            r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"mj-0013","ErrorRelatedTo":["To[0].Email"]},{"ErrorCode":"mj-0013","ErrorRelatedTo":["ReplyTo.Email"]}]}]}"#,
            r#"{"Messages":[{"Status":"error"}]}"#,
        ] {
            let err = interpret(StatusCode::BAD_REQUEST, body).unwrap_err();
            assert!(matches!(err, MailError::Permanent(_)), "{body}: {err:?}");
        }
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert!(interpret(StatusCode::TOO_MANY_REQUESTS, "").unwrap_err().is_transient());
        assert!(interpret(StatusCode::BAD_GATEWAY, "<html>").unwrap_err().is_transient());
        assert!(!interpret(StatusCode::UNAUTHORIZED, "").unwrap_err().is_transient());
    }

    #[test]
    fn a_whole_call_error_without_message_results_is_explained_to_every_message() {
        let body = r#"{"ErrorIdentifier":"e-1","ErrorCode":"mj-0002","StatusCode":400,"ErrorMessage":"Malformed JSON, please review the syntax and properties types."}"#;
        let results = read_answer(StatusCode::BAD_REQUEST, body, &["row-0", "row-1"]);
        assert_eq!(results.len(), 2);
        for result in results {
            let err = result.unwrap_err();
            assert!(matches!(err, MailError::Permanent(_)), "{err:?}");
            assert!(err.to_string().contains("Malformed JSON"), "{err}");
        }
    }

    #[test]
    fn a_result_is_paired_by_its_custom_id_before_its_position_and_a_stranger_pairs_with_nothing() {
        let body = r#"{"Messages":[
            {"Status":"success","CustomID":"b","To":[{"MessageID":2}]},
            {"Status":"success","CustomID":"","To":[{"MessageID":1}]},
            {"Status":"success","CustomID":"stranger","To":[{"MessageID":9}]},
            {"Status":"success","CustomID":"a","To":[{"MessageID":10}]}
        ]}"#;
        let ids: Vec<_> = read_answer(StatusCode::OK, body, &["a", "b", "c", "d"])
            .into_iter()
            .map(|result| result.map(|delivery| delivery.provider_id).map_err(|err| err.to_string()))
            .collect();
        // "a" is named by the fourth result; the unnamed second result is "b"'s by position,
        // but "b" has its own, so the unnamed one pairs with nothing, as does the stranger.
        assert_eq!(ids[0], Ok("10".to_owned()));
        assert_eq!(ids[1], Ok("2".to_owned()));
        assert!(ids[2].as_ref().is_err_and(|err| err.contains("without a result for this message")), "{:?}", ids[2]);
        assert!(ids[3].is_err(), "{:?}", ids[3]);
    }

    #[test]
    fn messages_sharing_a_custom_id_keep_their_positions() {
        let body = r#"{"Messages":[
            {"Status":"success","CustomID":"same","To":[{"MessageID":1}]},
            {"Status":"error","CustomID":"same","Errors":[{"ErrorCode":"send-0008","ErrorRelatedTo":["From"]}]}
        ]}"#;
        let results = read_answer(StatusCode::BAD_REQUEST, body, &["same", "same"]);
        assert_eq!(results[0].as_ref().unwrap().provider_id, "1");
        assert!(matches!(results[1], Err(MailError::Permanent(_))), "{:?}", results[1]);
    }
}
