//! The mock API server's store: objects as JSON text at their resourceVersion, and the log of
//! changes that watches replay (the oldest dropped past a capacity, as compaction does).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::body::Bytes;
use serde_json::{Value, json};

use super::api_server::Resource;
use super::selector::Labels;
use super::watch::WatchFilter;

/// Changes kept for watches to resume from; an older resourceVersion gets 410 Gone (compaction).
const LOG_CAPACITY: usize = 100_000;

pub type Key = (Resource, String, String);

/// An object as stored: its JSON text (shared with the watch events that carry it).
#[derive(Clone)]
pub struct Stored {
    pub labels: Arc<Labels>,
    pub json: Bytes,
}

impl Stored {
    pub fn new(object: &Value) -> Self {
        let labels = object["metadata"]["labels"]
            .as_object()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        Stored { labels: Arc::new(labels), json: Bytes::from(serde_json::to_vec(object).expect("JSON")) }
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).expect("stored JSON")
    }
}

/// One change, as the line a watch sends.
pub struct Change {
    rv: u64,
    resource: Resource,
    namespace: String,
    labels: Arc<Labels>,
    line: Bytes,
}

#[derive(Default)]
pub struct Store {
    pub rv: u64,
    pub objects: BTreeMap<Key, Stored>,
    pub log: VecDeque<Change>,
    /// Every change after this resourceVersion is in `log`.
    pub log_from: u64,
    pub uids: u64,
    /// The Jobs created through the API, in order (the mock Job controller finishes them).
    pub started: Vec<Key>,
    pub due: usize,
}

impl Store {
    /// Stores `object` at a new resourceVersion and logs the change.
    pub fn put(&mut self, key: Key, mut object: Value, change: &str) -> Stored {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let stored = Stored::new(&object);
        let mut line = Vec::with_capacity(stored.json.len() + 32);
        line.extend_from_slice(format!(r#"{{"type":"{change}","object":"#).as_bytes());
        line.extend_from_slice(&stored.json);
        line.extend_from_slice(b"}\n");
        self.log.push_back(Change {
            rv: self.rv,
            resource: key.0,
            namespace: key.1.clone(),
            labels: stored.labels.clone(),
            line: line.into(),
        });
        while self.log.len() > LOG_CAPACITY {
            if let Some(dropped) = self.log.pop_front() {
                self.log_from = dropped.rv;
            }
        }
        if change == "DELETED" {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, stored.clone());
        }
        stored
    }

    pub fn uid(&mut self) -> String {
        self.uids += 1;
        format!("33333333-0000-4000-8000-{:012}", self.uids)
    }
}

pub fn name_of(object: &Value, field: &str) -> String {
    object["metadata"][field].as_str().unwrap_or_default().to_owned()
}

impl Store {
    /// The changes after `rv` that match, appended to `into`, and the current resourceVersion;
    /// `None` when `rv` is older than the oldest change kept (the watch must end with 410 Gone).
    pub fn changes_after(&self, rv: u64, filter: &WatchFilter, into: &mut VecDeque<Bytes>) -> Option<u64> {
        if rv < self.log_from {
            return None;
        }
        let first = self.log.partition_point(|c| c.rv <= rv);
        for change in self.log.range(first..) {
            if filter.matches(change.resource, &change.namespace, &change.labels) {
                into.push_back(change.line.clone());
            }
        }
        Some(self.rv)
    }
}
