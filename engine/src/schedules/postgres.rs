//! Schedules kept in PostgreSQL (standalone): stored with the custom resources' spec and status
//! shapes; `serve`'s in-process scheduler decides and runs them and writes their status.

use std::sync::Arc;

use borcelle_store::schedules::{self, NewSchedule, ScheduleRow};
use borcelle_store::{Owner, PgPool};
use chrono::Utc;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{ScheduleStore, ScheduleView, Scope, name_taken};
use crate::occurrence::OccurrenceSpec;
use crate::scheduler::{first_due, status_view};
use crate::{Error, Result};

/// Most schedules listed at once.
const LIST_MAX: i64 = 1000;

/// The standalone store.
pub struct PgSchedules {
    pub db: PgPool,
    /// This process's scheduler: woken after a change, so that it looks at once.
    pub wake: Arc<Notify>,
}

impl PgSchedules {
    async fn row(&self, scope: Scope, name: &str) -> Result<ScheduleRow> {
        schedules::get(&self.db, scope.kind, scope.owner, name).await?.ok_or(Error::NotFound(scope.noun()))
    }

    /// The views of stored rows, with their runs read in two queries.
    async fn views(&self, rows: Vec<ScheduleRow>) -> Result<Vec<ScheduleView>> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let active = schedules::active_runs(&self.db, &ids).await?;
        let last = schedules::last_runs(&self.db, &ids).await?;
        let now = Utc::now();
        Ok(rows
            .into_iter()
            .map(|row| {
                let mut status = status_view(&row, &active, last.iter().find(|l| l.resource_uid == row.id));
                // Not looked at by the scheduler yet: show when it will first run.
                if status.get("nextScheduleTime").is_none_or(Value::is_null)
                    && row.status.get("conditions").is_none()
                    && let Ok(spec) = OccurrenceSpec::from_json(&row.kind, row.spec.clone())
                    && let Some(next) = first_due(&spec, row.created_at, row.last_scheduled_at.unwrap_or(now).max(now))
                    && let Some(map) = status.as_object_mut()
                {
                    map.insert("nextScheduleTime".into(), json!(next));
                }
                ScheduleView {
                    kind: row.kind,
                    name: row.name,
                    uid: row.id,
                    spec: row.spec,
                    status,
                    creation_timestamp: row.created_at,
                }
            })
            .collect())
    }

    async fn view(&self, row: ScheduleRow) -> Result<ScheduleView> {
        self.views(vec![row]).await?.pop().ok_or(Error::NotFound("schedule"))
    }
}

impl ScheduleStore for PgSchedules {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn list(&self, scope: Scope) -> BoxFuture<'_, Result<Vec<ScheduleView>>> {
        Box::pin(async move { self.views(schedules::list(&self.db, scope.kind, scope.owner, LIST_MAX).await?).await })
    }

    fn get<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<ScheduleView>> {
        Box::pin(async move { self.view(self.row(scope, name).await?).await })
    }

    fn spec<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move { Ok(self.row(scope, name).await?.spec) })
    }

    fn create<'a>(
        &'a self,
        scope: Scope,
        creator: Owner,
        name: &'a str,
        spec: Value,
    ) -> BoxFuture<'a, Result<ScheduleView>> {
        Box::pin(async move {
            let now = Utc::now();
            let new = NewSchedule {
                id: Uuid::now_v7(),
                kind: scope.kind,
                owner_id: creator.id(),
                name,
                spec: &spec,
                status: &json!({}),
                next_run_at: Some(now),
                created_at: now,
            };
            let row = schedules::insert(&self.db, &new).await?.ok_or_else(|| name_taken(scope, name))?;
            self.wake.notify_one();
            self.view(row).await
        })
    }

    fn replace_spec<'a>(&'a self, scope: Scope, name: &'a str, spec: Value) -> BoxFuture<'a, Result<ScheduleView>> {
        Box::pin(async move {
            let row = self.row(scope, name).await?;
            let row = schedules::update_spec(&self.db, row.id, &spec, &row.status, Some(Utc::now()))
                .await?
                .ok_or(Error::NotFound(scope.noun()))?;
            self.wake.notify_one();
            self.view(row).await
        })
    }

    fn delete<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let row = self.row(scope, name).await?;
            schedules::delete(&self.db, row.id).await?;
            Ok(())
        })
    }
}
