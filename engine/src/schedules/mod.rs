//! Reminders and broadcasts as the API shows them, whoever keeps them: one [`ScheduleStore`]
//! interface with two implementations chosen by configuration, PostgreSQL (standalone; `serve`'s
//! in-process scheduler runs them) and the cluster's `ScheduledReminder` / `Broadcast` resources
//! (the operator runs them). [`Schedules`] checks every spec the same way before either keeps it,
//! and shows both in the custom resources' shapes (`{name, spec, status}`).

mod checks;
pub mod kubernetes;
mod postgres;

use std::sync::Arc;

use borcelle_crds::schedule::{Schedule, parse_time_zone};
use borcelle_store::schedules::{BROADCAST, REMINDER};
use borcelle_store::{Owner, PgPool};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

pub use checks::check_name;
pub use kubernetes::Cluster;
pub use postgres::PgSchedules;

use crate::{Error, Result};

/// A reminder or broadcast as the API shows it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", schema(as = Schedule))]
pub struct ScheduleView {
    /// `ScheduledReminder` or `Broadcast`.
    pub kind: String,
    pub name: String,
    pub uid: Uuid,
    /// The resource's spec.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub spec: Value,
    /// The resource's status: `nextScheduleTime`, `lastScheduleTime`, `active`, `lastRun`,
    /// `conditions`; a broadcast's `phase`, `deliveredAt`, `recipients`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub status: Value,
    pub creation_timestamp: DateTime<Utc>,
}

/// Which kind, and whose.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub kind: &'static str,
    /// The reminders' owner; `None` for broadcasts (the administrators' shared list).
    pub owner: Option<Owner>,
}

impl Scope {
    pub fn reminders(owner: Owner) -> Self {
        Scope { kind: REMINDER, owner: Some(owner) }
    }

    pub fn broadcasts() -> Self {
        Scope { kind: BROADCAST, owner: None }
    }

    pub fn is_broadcast(self) -> bool {
        self.kind == BROADCAST
    }

    pub fn noun(self) -> &'static str {
        if self.is_broadcast() { "broadcast" } else { "reminder" }
    }
}

/// Who asks: the account that creates or changes a schedule.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub id: Owner,
    pub email: &'a str,
}

/// Where schedules are kept. Every method sees only the scope's schedules: a reminder of another
/// user is not found, exactly as one that does not exist.
pub trait ScheduleStore: Send + Sync {
    /// `postgres` or `kubernetes`, for logs.
    fn name(&self) -> &'static str;
    /// The scope's schedules, by name.
    fn list(&self, scope: Scope) -> BoxFuture<'_, Result<Vec<ScheduleView>>>;
    fn get<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<ScheduleView>>;
    /// The current spec, to patch.
    fn spec<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<Value>>;
    /// Keeps a new schedule with a checked spec; a taken name is a conflict.
    fn create<'a>(
        &'a self,
        scope: Scope,
        creator: Owner,
        name: &'a str,
        spec: Value,
    ) -> BoxFuture<'a, Result<ScheduleView>>;
    /// Replaces the spec (checked) of an existing schedule.
    fn replace_spec<'a>(&'a self, scope: Scope, name: &'a str, spec: Value) -> BoxFuture<'a, Result<ScheduleView>>;
    fn delete<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// Reminders and broadcasts: checked here, kept by the configured store.
#[derive(Clone)]
pub struct Schedules {
    /// For the checks against the owner's data (notes, contacts, attachments).
    db: PgPool,
    store: Arc<dyn ScheduleStore>,
}

impl Schedules {
    /// Kept in PostgreSQL; `wake` is this process's scheduler, woken to look at a change at once.
    pub fn postgres(db: PgPool, wake: Arc<Notify>) -> Self {
        Self { store: Arc::new(PgSchedules { db: db.clone(), wake }), db }
    }

    /// Kept as resources in the cluster, run by the operator.
    pub fn kubernetes(db: PgPool, cluster: Cluster) -> Self {
        Self { db, store: Arc::new(cluster) }
    }

    /// Kept by `store` (tests pass one of their own).
    pub fn with_store(db: PgPool, store: Arc<dyn ScheduleStore>) -> Self {
        Self { db, store }
    }

    /// `postgres` or `kubernetes`.
    pub fn backend(&self) -> &'static str {
        self.store.name()
    }

    pub async fn list(&self, scope: Scope) -> Result<Vec<ScheduleView>> {
        self.store.list(scope).await
    }

    pub async fn get(&self, scope: Scope, name: &str) -> Result<ScheduleView> {
        self.store.get(scope, name).await
    }

    /// Creates a schedule, checked as the schema and the caller's data require.
    pub async fn create(&self, scope: Scope, caller: &Caller<'_>, name: &str, spec: Value) -> Result<ScheduleView> {
        check_name(name)?;
        if !scope.is_broadcast() && name.len() > 54 {
            return Err(Error::invalid("name", "use at most 54 characters"));
        }
        let checked = checks::check(&self.db, scope, caller, spec, checks::Recipients::Check).await?;
        self.store.create(scope, caller.id, name, checks::spec_json(&checked)?).await
    }

    /// Applies a JSON merge patch (RFC 7386) to the spec and checks the result.
    pub async fn patch(&self, scope: Scope, caller: &Caller<'_>, name: &str, patch: &Value) -> Result<ScheduleView> {
        let mut spec = self.store.spec(scope, name).await?;
        let before = spec.get("recipients").cloned();
        merge_patch(&mut spec, patch);
        let recipients = if spec.get("recipients") == before.as_ref() {
            checks::Recipients::Keep
        } else {
            checks::Recipients::Check
        };
        let checked = checks::check(&self.db, scope, caller, spec, recipients).await?;
        self.store.replace_spec(scope, name, checks::spec_json(&checked)?).await
    }

    pub async fn delete(&self, scope: Scope, name: &str) -> Result<()> {
        self.store.delete(scope, name).await
    }
}

/// A taken name.
fn name_taken(scope: Scope, name: &str) -> Error {
    Error::Conflict {
        code: "name_taken",
        field: "name",
        message: format!("a {} named {name:?} exists already", scope.noun()),
        existing_id: None,
    }
}

/// RFC 7386: objects merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The next `count` runs of a schedule in a time zone (a preview while typing it).
pub fn preview(schedule: &str, time_zone: Option<&str>, count: usize) -> Result<Vec<DateTime<Utc>>> {
    let parsed: Schedule = schedule
        .parse()
        .map_err(|err: borcelle_crds::schedule::ScheduleError| Error::invalid("schedule", err.to_string()))?;
    let tz = parse_time_zone(time_zone.unwrap_or("UTC")).map_err(|err| Error::invalid("timeZone", err.to_string()))?;
    Ok(parsed.occurrences(Utc::now(), tz).take(count.clamp(1, 20)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(&mut target, &json!({"a": null, "b": {"c": 5}, "e": [2], "f": true}));
        assert_eq!(target, json!({"b": {"c": 5, "d": 3}, "e": [2], "f": true}));
    }
}
