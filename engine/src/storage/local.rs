//! Objects as files under a directory. A put writes a temporary file, flushes it to disk and
//! renames it into place, so a crash never leaves a partial object under its key.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use tokio_util::io::ReaderStream;

use super::{ByteStream, ObjectStore, StoreError, check_key};

/// Temporary files are `.tmp-<random>.part` beside their object: never the name of an object,
/// since keys are UUIDs (a crash mid-write can leave one, but never a partial object).
const TEMP_PREFIX: &str = ".tmp-";
const READ_CHUNK: usize = 64 * 1024;

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Uses `root`, creating it when missing. A directory that cannot be created (a read-only
    /// file system) is only a warning: the server runs, and uploads answer 503 until it is fixed.
    pub fn new(root: PathBuf) -> Self {
        if let Err(err) = std::fs::create_dir_all(&root) {
            tracing::warn!(dir = %root.display(), error = %err, "the attachment directory cannot be created; uploads will fail (set BORCELLE_STORAGE_DIR or BORCELLE_STORAGE=s3)");
        }
        Self { root }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn backend(action: &str, path: &Path, err: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{action} {}: {err}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file in the same directory, then renames it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().ok_or_else(|| StoreError::InvalidKey(path.display().to_string()))?;
    std::fs::create_dir_all(dir).map_err(|err| backend("creating", dir, err))?;
    let temp = dir.join(format!("{TEMP_PREFIX}{}.part", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = std::fs::File::create_new(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // The rename itself survives a crash only once the directory is flushed too.
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(backend("writing", path, err));
    }
    Ok(())
}

impl ObjectStore for LocalStore {
    fn name(&self) -> &'static str {
        "local"
    }

    fn put<'a>(&'a self, key: &'a str, _content_type: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            // A blocking task runs to the end even if this future is dropped, so the temporary
            // file is always either renamed or removed.
            tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
                .await
                .map_err(|err| StoreError::Backend(format!("writing {key}: {err}")))?
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<ByteStream, StoreError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let file = match tokio::fs::File::open(&path).await {
                Ok(file) => file,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::NotFound(key.to_owned()));
                }
                Err(err) => return Err(backend("opening", &path, err)),
            };
            let stream = ReaderStream::with_capacity(file, READ_CHUNK)
                .map_err(move |err| StoreError::Backend(format!("reading {}: {err}", path.display())));
            Ok(stream.boxed())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(backend("removing", &path, err)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete_round_trip_and_leave_no_temporary_file() {
        let root = std::env::temp_dir().join(format!("borcelle-store-{}", uuid::Uuid::new_v4().simple()));
        let store = LocalStore::new(root.clone());
        store.put("owner/object", "text/plain", Bytes::from_static(b"hello")).await.unwrap();
        let bytes = super::super::get_bytes(&store, "owner/object", 5).await.unwrap();
        assert_eq!(&bytes[..], b"hello");
        assert!(matches!(super::super::get_bytes(&store, "owner/object", 4).await, Err(StoreError::TooLarge { .. })));
        let names: Vec<_> = std::fs::read_dir(root.join("owner")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("object")]);
        store.delete("owner/object").await.unwrap();
        store.delete("owner/object").await.unwrap();
        assert!(matches!(store.get("owner/object").await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.get("../escape").await, Err(StoreError::InvalidKey(_))));
        let _ = std::fs::remove_dir_all(root);
    }
}
