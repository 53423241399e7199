//! argon2id password hashing, run on the blocking pool so it never stalls the async workers.
//!
//! Each hash needs about 19 MiB, so a semaphore bounds how many run at once (twice the cores):
//! a flood of logins waits, then gets 503, instead of exhausting memory.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::Error;

/// How long a request waits for a hashing slot before it is turned away.
const WAIT_FOR_SLOT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing is saturated: too many password checks in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl From<PasswordError> for Error {
    fn from(err: PasswordError) -> Self {
        match err {
            PasswordError::Busy => Error::Unavailable(Box::new(err)),
            PasswordError::Failed(_) => Error::Internal(Box::new(err)),
        }
    }
}

fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Semaphore::new(cores * 2)
    })
}

/// Runs argon2 work on the blocking pool once a slot is free.
async fn limited<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
) -> Result<T, PasswordError> {
    limited_by(slots(), work).await
}

async fn limited_by<T: Send + 'static>(
    slots: &Semaphore,
    work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
) -> Result<T, PasswordError> {
    let _permit = tokio::time::timeout(WAIT_FOR_SLOT, slots.acquire())
        .await
        .map_err(|_| PasswordError::Busy)?
        .map_err(|_| PasswordError::Busy)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| PasswordError::Failed(format!("the hashing task failed: {err}")))?
}

/// Hashes a password into a PHC string (`$argon2id$v=19$…`).
pub async fn hash(password: String) -> Result<String, PasswordError> {
    limited(move || hash_blocking(&password)).await
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| PasswordError::Failed(format!("hashing a password: {err}")))
}

/// Checks a password against a stored hash. With no stored hash (unknown account) it verifies
/// against a dummy hash so that the answer takes as long as for a real account.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, PasswordError> {
    limited(move || {
        let known = stored.is_some();
        let phc = match stored {
            Some(hash) => hash,
            None => dummy_hash()?.to_owned(),
        };
        let parsed = PasswordHash::new(&phc)
            .map_err(|err| PasswordError::Failed(format!("stored password hash is invalid: {err}")))?;
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        Ok(known && matches)
    })
    .await
}

fn dummy_hash() -> Result<&'static str, PasswordError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_blocking("borcelle-dummy-password-for-timing")?;
    Ok(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let stored = hash("correct horse battery".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("wrong horse battery".into(), Some(stored)).await.unwrap());
        assert!(!verify("anything at all".into(), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_jobs_run_at_once_than_there_are_slots() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let slots: &'static Semaphore = Box::leak(Box::new(Semaphore::new(2)));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (running, peak) = (running.clone(), peak.clone());
                tokio::spawn(limited_by(slots, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }))
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "two slots, two jobs at a time");
        assert_eq!(slots.available_permits(), 2, "every slot was given back");
    }
}
