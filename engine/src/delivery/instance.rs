//! An engine's name on its claims, and taking over from a previous run of the same name.
//!
//! A crashed engine's claims would wait for their lease (two minutes by default) before another
//! engine took them. An engine that starts again under the same name (the same pod after a
//! container restart, the same host and port) gives them back at once instead, but only once it
//! is sure that no live process still runs under that name: it takes a PostgreSQL advisory lock
//! named after it and holds it, on a connection of its own, for as long as it runs. A process that
//! dies loses its connection and so its lock; a live one keeps it, and an engine that cannot take
//! the lock runs under a name of its own and leaves those claims to their lease.

use borcelle_store::{PgConnection, PgPool, messages};
use sha2::{Digest, Sha256};

/// The default name of an engine of `role` on this host (`host:role`).
pub fn default_name(role: &str) -> String {
    format!("{}:{role}", host_name())
}

/// The host's name: the pod's in Kubernetes.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A name of this run's own under `name`: what claims are made under when the name itself is not
/// held (they are never given back by someone else's take-over).
pub fn unique(name: &str) -> String {
    format!("{name}#{}", uuid::Uuid::new_v4().simple())
}

/// The advisory lock key of a name.
fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("borcelle-delivery:{name}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

/// The connection holding an engine's name; dropping it (or the process dying) lets the name go.
pub struct NameLock(#[allow(dead_code)] Option<PgConnection>);

/// Takes `name` for this run: when no live process holds it, gives back the claims a previous run
/// under it left, and returns it with the lock that keeps it; otherwise returns a name of this
/// run's own (claims are never mixed with a live process's). Without a database at hand the run
/// goes on under a name of its own; its predecessor's claims then wait for their lease.
pub async fn take_over(db: &PgPool, name: &str) -> (String, NameLock) {
    let own = || unique(name);
    let mut connection = match db.acquire().await {
        Ok(connection) => connection.detach(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot take the engine's name; claims of a previous run wait for their lease");
            return (own(), NameLock(None));
        }
    };
    let taken: Result<bool, sqlx::Error> =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(lock_key(name)).fetch_one(&mut connection).await;
    match taken {
        Ok(true) => {
            match messages::release_claimed_by(&mut connection, name).await {
                Ok(0) => {}
                Ok(released) => {
                    tracing::info!(released, engine = name, "gave back the claims of this engine's previous run")
                }
                Err(err) => {
                    tracing::warn!(error = %err, "giving back the previous run's claims failed; they wait for their lease")
                }
            }
            (name.to_owned(), NameLock(Some(connection)))
        }
        Ok(false) => {
            let unique = own();
            tracing::warn!(engine = name, running_as = %unique, "another live process runs under this engine's name (set BORCELLE_INSTANCE apart)");
            (unique, NameLock(None))
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot take the engine's name; claims of a previous run wait for their lease");
            (own(), NameLock(None))
        }
    }
}
