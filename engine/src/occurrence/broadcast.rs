//! A broadcast occurrence: one notification per user of its audience and one live event, and
//! optionally its emails through the delivery engine.

use borcelle_crds::{AudienceGroup, BroadcastSpec, Channel};
use borcelle_store::occurrences::{self, BroadcastNotice, UserGroup};
use borcelle_store::{Owner, PgConnection, notifications, tasks, users};
use serde_json::json;
use uuid::Uuid;

use super::{Occurrence, OccurrenceError, Started, claim};
use crate::events::{self, Envelope, LiveEvent};

/// Starts a broadcast occurrence in the caller's transaction.
pub(super) async fn start(
    tx: &mut PgConnection,
    occurrence: &Occurrence<'_>,
    spec: &BroadcastSpec,
    domain: &str,
) -> Result<Started, OccurrenceError> {
    if !borcelle_crds::text::is_one_line(&spec.title) {
        return Err(OccurrenceError::Permanent("spec.title: must be one line, without control characters".into()));
    }
    let creator = match occurrence.owner {
        Some(owner) => Some(owner),
        None => occurrences::oldest_admin(&mut *tx).await?,
    };
    let id = match claim(tx, occurrence, creator).await? {
        Ok(id) => id,
        Err(existing) => return Ok(existing),
    };
    let emails: Vec<String> = spec.audience.users.iter().map(|e| e.trim().to_lowercase()).collect();
    let group = match spec.audience.group {
        AudienceGroup::All => UserGroup::All,
        AudienceGroup::Admins => UserGroup::Admins,
        AudienceGroup::Users => UserGroup::Emails(&emails),
    };
    let data = json!({
        "broadcast": occurrence.resource,
        "occurrence_id": id,
        "severity": spec.severity.as_str(),
        "scheduled_at": occurrence.scheduled,
    });
    let mut announcements = Vec::new();
    let mut skipped = Vec::new();
    let mut recipients = 0;
    if spec.channels.contains(&Channel::Web) {
        let notice =
            BroadcastNotice { title: &spec.title, body: &spec.message, data: &data, expires_at: spec.expires_at };
        let reached = occurrences::notify_users(tx, group, &notice).await?;
        recipients = reached.len() as i32;
        let event = LiveEvent::Broadcast(events::BroadcastNotice {
            title: spec.title.clone(),
            body: spec.message.clone(),
            severity: spec.severity.as_str().to_owned(),
            broadcast: occurrence.resource.to_owned(),
            occurrence_id: id,
        });
        match group {
            // One event that every replica pushes to every connected session.
            UserGroup::All => announcements.push(Envelope::to_all(&event)),
            UserGroup::Admins | UserGroup::Emails(_) => {
                announcements.extend(reached.iter().map(|user| Envelope::to_user(*user, &event)))
            }
        }
        if let UserGroup::Emails(wanted) = group
            && reached.len() < wanted.len()
        {
            let found = users::emails_by_ids(&mut *tx, &reached).await?;
            skipped.extend(wanted.iter().filter(|e| !found.contains(e)).cloned());
        }
    }
    let mut task_id = None;
    if spec.emails() {
        match creator {
            Some(sender) => {
                let id = Uuid::now_v7();
                let task = tasks::NewTask {
                    id,
                    owner: Owner::new(sender),
                    kind: "broadcast",
                    note_id: None,
                    subject: &spec.title,
                    body: &spec.message,
                    message_id_domain: domain,
                };
                tasks::insert(tx, &task).await?;
                let queued = occurrences::queue_users(tx, sender, id, domain, group).await?;
                if queued == 0 {
                    tasks::delete_empty(tx, id).await?;
                } else {
                    tasks::set_total(tx, id, queued).await?;
                    borcelle_store::suppressions::mark_queued(tx, &[id]).await?;
                    recipients = recipients.max(queued);
                    task_id = Some(id);
                    announcements.push(Envelope::to_user(sender, &LiveEvent::task_started(id, queued)));
                    let finished = crate::delivery::finished_at_once(tx, &[id]).await?;
                    announcements.extend(finished.into_iter().map(|(_, event)| event));
                }
            }
            None => skipped.push("email channel: no administrator account exists to send from".to_owned()),
        }
    }
    occurrences::set_outcome(tx, id, task_id, recipients, &json!(skipped)).await?;
    // Without emails the broadcast is complete now: tell its creator. With emails, the task's
    // completion notification does.
    if task_id.is_none()
        && let Some(creator) = creator
    {
        let title = format!("Broadcast {:?} delivered to {recipients} user(s)", spec.title);
        let data = json!({ "occurrence_id": id, "recipients": recipients, "broadcast": occurrence.resource });
        let notification =
            notifications::insert(&mut *tx, Owner::new(creator), "broadcast_done", &title, &skipped.join("; "), &data)
                .await?;
        announcements.push(Envelope::to_user(creator, &LiveEvent::notification(notification)));
    }
    Ok(Started { occurrence_id: id, task_id, recipients, skipped, created: true, events: announcements })
}
