//! The operator's view of the Jobs it owns, kept from the controller's Job watch: each reconcile
//! reads its resource's Jobs here instead of listing them from the API server (a list per
//! reconcile made the API server's work grow with the square of the Jobs). What is kept is the
//! little a decision needs ([`OwnedJob`]), indexed by the owning resource's uid.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;

use crate::job::OwnedJob;

/// Owned Jobs by owner uid, then by Job name.
type Index = HashMap<String, BTreeMap<String, OwnedJob>>;

/// The owned Jobs of every resource, as the watch last showed them.
#[derive(Debug, Clone, Default)]
pub struct JobCache {
    inner: Arc<RwLock<State>>,
}

#[derive(Debug, Default)]
struct State {
    index: Index,
    /// A relist in progress: its Jobs replace the index when it is done.
    relist: Option<Index>,
    /// Whether a first full list has been seen.
    synced: bool,
}

/// The uid of the resource controlling `job`, if any.
fn owner_uid(job: &Job) -> Option<&str> {
    job.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str())
}

fn insert(index: &mut Index, job: &Job) {
    let (Some(owner), Some(owned)) = (owner_uid(job), OwnedJob::from_job(job)) else { return };
    index.entry(owner.to_owned()).or_default().insert(owned.name.clone(), owned);
}

fn remove(index: &mut Index, job: &Job) {
    let (Some(owner), Some(name)) = (owner_uid(job), job.metadata.name.as_deref()) else { return };
    if let Some(jobs) = index.get_mut(owner) {
        jobs.remove(name);
        if jobs.is_empty() {
            index.remove(owner);
        }
    }
}

impl JobCache {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Folds one watch event in.
    pub fn apply(&self, event: &Event<Job>) {
        let mut state = self.write();
        match event {
            Event::Apply(job) => insert(&mut state.index, job),
            Event::Delete(job) => remove(&mut state.index, job),
            Event::Init => state.relist = Some(Index::new()),
            Event::InitApply(job) => match state.relist.as_mut() {
                Some(relist) => insert(relist, job),
                None => insert(&mut state.index, job),
            },
            Event::InitDone => {
                if let Some(relist) = state.relist.take() {
                    state.index = relist;
                }
                state.synced = true;
            }
        }
    }

    /// Whether the first full list of Jobs has been seen.
    pub fn is_synced(&self) -> bool {
        self.read().synced
    }

    /// The Jobs controlled by the resource with `uid`, in name order.
    pub fn jobs_of(&self, uid: &str) -> Vec<OwnedJob> {
        self.read().index.get(uid).map(|jobs| jobs.values().cloned().collect()).unwrap_or_default()
    }

    /// Records a Job this process just created or adopted, before the watch shows it: a reconcile
    /// that runs in between then sees it rather than creating it again.
    pub fn created(&self, owner_uid: &str, job: OwnedJob) {
        let mut state = self.write();
        // A relist in progress replaces the index when it ends: it must keep this Job too, which
        // its pages may have been read before.
        if let Some(relist) = state.relist.as_mut() {
            relist.entry(owner_uid.to_owned()).or_default().insert(job.name.clone(), job.clone());
        }
        state.index.entry(owner_uid.to_owned()).or_default().insert(job.name.clone(), job);
    }

    /// Marks a Job this process just asked to delete.
    pub fn deleting(&self, owner_uid: &str, name: &str) {
        let mut state = self.write();
        if let Some(job) = state.index.get_mut(owner_uid).and_then(|jobs| jobs.get_mut(name)) {
            job.deleting = true;
        }
        if let Some(job) = state.relist.as_mut().and_then(|r| r.get_mut(owner_uid)).and_then(|jobs| jobs.get_mut(name))
        {
            job.deleting = true;
        }
    }

    /// How many Jobs are cached (for tests and the benchmark).
    pub fn len(&self) -> usize {
        self.read().index.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One [`JobCache`] per kind (each fed by its own Job watch, whose relists replace only its own).
#[derive(Debug, Clone, Default)]
pub struct JobCaches {
    reminders: JobCache,
    broadcasts: JobCache,
}

impl JobCaches {
    pub fn of(&self, kind: crate::Kind) -> &JobCache {
        match kind {
            crate::Kind::ScheduledReminder => &self.reminders,
            crate::Kind::Broadcast => &self.broadcasts,
        }
    }
}

/// What the controller needs of a Job once it is cached: which resource it belongs to (to queue
/// that resource's reconcile). Everything else (spec, status, managedFields) is dropped before
/// the Job goes further.
pub fn trim_for_trigger(job: Job) -> Job {
    Job {
        metadata: ObjectMeta {
            name: job.metadata.name,
            namespace: job.metadata.namespace,
            uid: job.metadata.uid,
            owner_references: job.metadata.owner_references,
            ..ObjectMeta::default()
        },
        spec: None,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn job(name: &str, owner: &str) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("ns".to_owned()),
                annotations: Some(
                    [(crate::job::ANNOTATION_SCHEDULED_TIME.to_owned(), "2026-12-04T09:00:00Z".to_owned())].into(),
                ),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.to_owned(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..Job::default()
        }
    }

    #[test]
    fn a_job_created_while_a_relist_is_read_survives_the_relist() {
        let cache = JobCache::default();
        cache.apply(&Event::Init);
        cache.apply(&Event::InitApply(job("a-1", "a")));
        // Created by this process after the list's pages were read: the list does not hold it.
        let created = crate::job::OwnedJob::from_job(&job("a-2", "a")).unwrap();
        cache.created("a", created);
        cache.deleting("a", "a-1");
        cache.apply(&Event::InitDone);
        let jobs = cache.jobs_of("a");
        assert_eq!(jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(), ["a-1", "a-2"]);
        assert!(jobs[0].deleting, "the deletion asked during the relist is kept");
    }

    #[test]
    fn jobs_are_indexed_by_owner_and_a_relist_replaces_the_index() {
        let cache = JobCache::default();
        cache.apply(&Event::Init);
        cache.apply(&Event::InitApply(job("a-1", "a")));
        assert!(!cache.is_synced());
        cache.apply(&Event::InitDone);
        cache.apply(&Event::Apply(job("a-2", "a")));
        cache.apply(&Event::Apply(job("b-1", "b")));
        assert!(cache.is_synced());
        assert_eq!(cache.jobs_of("a").iter().map(|j| j.name.as_str()).collect::<Vec<_>>(), ["a-1", "a-2"]);
        cache.apply(&Event::Delete(job("a-1", "a")));
        assert_eq!(cache.jobs_of("a").len(), 1);
        // A relist (after the watch lost its place) holds only what exists now.
        cache.apply(&Event::Init);
        cache.apply(&Event::InitApply(job("b-1", "b")));
        cache.apply(&Event::InitDone);
        assert!(cache.jobs_of("a").is_empty());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_trigger_keeps_only_what_maps_a_job_to_its_owner() {
        let trimmed = trim_for_trigger(job("a-1", "a"));
        assert_eq!(trimmed.metadata.owner_references.unwrap()[0].uid, "a");
        assert!(trimmed.metadata.annotations.is_none() && trimmed.spec.is_none() && trimmed.status.is_none());
    }
}
