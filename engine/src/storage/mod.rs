//! The object store that keeps attachment bytes: one [`ObjectStore`] interface with two
//! implementations chosen by configuration, a local directory (default) and an S3-compatible bucket.

mod local;
mod s3;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::settings::{StorageBackend, StorageSettings};

pub use local::LocalStore;
pub use s3::S3Store;

/// Most [`get_bytes`] reserves before it has seen the bytes.
const PREALLOCATE_MAX: usize = 64 * 1024 * 1024;

/// An object's bytes, chunk by chunk.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} does not exist")]
    NotFound(String),
    #[error("object {key} is larger than the {limit} bytes expected")]
    TooLarge { key: String, limit: u64 },
    #[error("object key {0:?} is not valid")]
    InvalidKey(String),
    /// The store could not be reached or refused the operation (worth retrying).
    #[error("object store: {0}")]
    Backend(String),
}

/// Keeps objects by key. `put` is all or nothing: a failed or interrupted put leaves no object
/// under the key (and never a partial one).
pub trait ObjectStore: Send + Sync {
    /// Short name for logs (`local`, `s3`).
    fn name(&self) -> &'static str;
    /// Stores `bytes` under `key`, replacing any object there.
    fn put<'a>(&'a self, key: &'a str, content_type: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The object's bytes as a stream, for serving without holding the object in memory.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<ByteStream, StoreError>>;
    /// Removes the object; removing one that does not exist is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The store the server uses.
pub type Store = Arc<dyn ObjectStore>;

/// Reads a whole object into memory, refusing one larger than `limit` bytes (without reading
/// more than `limit` plus one chunk).
pub async fn get_bytes(store: &dyn ObjectStore, key: &str, limit: u64) -> Result<Bytes, StoreError> {
    let mut stream = store.get(key).await?;
    // Callers pass the recorded size: one allocation of the right size, bounded all the same.
    let mut buffer = BytesMut::with_capacity(usize::try_from(limit).unwrap_or(0).min(PREALLOCATE_MAX));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (buffer.len() + chunk.len()) as u64 > limit {
            return Err(StoreError::TooLarge { key: key.to_owned(), limit });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// Keys are ours (`owner/id`), but a store still refuses anything that could leave its
/// directory or bucket prefix: only `[A-Za-z0-9._-]` segments separated by single `/`, no `.` or `..`.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let valid = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if valid { Ok(()) } else { Err(StoreError::InvalidKey(key.to_owned())) }
}

/// Builds the store that the settings select.
pub async fn build_store(settings: &StorageSettings) -> Result<Store, crate::SetupError> {
    Ok(match &settings.backend {
        StorageBackend::Local { dir } => Arc::new(LocalStore::new(dir.clone())),
        StorageBackend::S3(s3) => Arc::new(S3Store::new(s3).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_climb_out_of_the_store() {
        for bad in ["", "/a", "a/", "a//b", "../a", "a/../b", "a/./b", ".", "a\\b", "a b", "a\0b", "é"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "0190-ab/0190-cd", "x.y_z-1"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }
}
