//! A short-lived memory of live sessions, one per process, so that a busy session is looked up in
//! PostgreSQL about once per [`TTL`] instead of on every request.
//!
//! What it may cost in freshness, and what it does not:
//! - an entry never outlives the session's absolute expiry nor its idle expiry (both checked on
//!   every hit, against the values read from the database), nor [`TTL`] after that read;
//! - a logout, a login that replaces a session, a password change or a password reset handled by
//!   this process removes the entries concerned at once, after its transaction commits, and a
//!   lookup that raced with it is not kept (see [`Ticket`]);
//! - what this process does not see — a logout or password change handled by another replica,
//!   `borcelle admin set-role`, a row changed by hand — takes effect here within [`TTL`].
//!
//! Only sessions that the database confirmed are kept: an unknown or expired cookie is looked up
//! every time, so guessing cannot fill this memory.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use borcelle_store::sessions::{ActiveSession, FoundSession};

/// How long a session read from the database is trusted without asking again: the longest a
/// revocation handled by another process (or made in SQL) takes to reach this one.
pub const TTL: Duration = Duration::from_secs(2);
/// Entries at most (a few hundred bytes each); past it, stale entries go, then all of them.
const MAX_ENTRIES: usize = 10_000;

static PROCESS: LazyLock<SessionCache> = LazyLock::new(SessionCache::default);

/// The cache of this process.
pub fn process() -> &'static SessionCache {
    &PROCESS
}

/// Live sessions by the hash of their cookie.
#[derive(Default)]
pub struct SessionCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Vec<u8>, Entry>,
    /// Counts revocations; a lookup that started before one is not cached.
    revocations: u64,
}

struct Entry {
    session: ActiveSession,
    expires_at: DateTime<Utc>,
    read_at: Instant,
}

/// Taken before reading a session from the database; [`SessionCache::insert`] keeps the row only
/// when no revocation happened in between (the row may predate it).
#[must_use]
pub struct Ticket(u64);

impl SessionCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session, when it was read less than [`TTL`] ago and is still within both expiries.
    pub fn get(&self, id_hash: &[u8], idle: Duration) -> Option<ActiveSession> {
        let inner = self.lock();
        let entry = inner.entries.get(id_hash)?;
        let now = Utc::now();
        let idle = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
        let live = entry.read_at.elapsed() < TTL && now < entry.expires_at && now < entry.session.last_seen_at + idle;
        live.then(|| entry.session.clone())
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().revocations)
    }

    /// Remembers a session just read from the database, unless a revocation came in between.
    pub fn insert(&self, ticket: Ticket, id_hash: &[u8], found: &FoundSession) {
        let mut inner = self.lock();
        if inner.revocations != ticket.0 {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.retain(|_, entry| entry.read_at.elapsed() < TTL);
            if inner.entries.len() >= MAX_ENTRIES {
                inner.entries.clear();
            }
        }
        let entry = Entry { session: found.session.clone(), expires_at: found.expires_at, read_at: Instant::now() };
        inner.entries.insert(id_hash.to_vec(), entry);
    }

    /// Forgets one session (logged out, or replaced by a new login).
    pub fn forget_session(&self, id_hash: &[u8]) {
        let mut inner = self.lock();
        inner.revocations += 1;
        inner.entries.remove(id_hash);
    }

    /// Forgets every session of a user (password changed or reset, sessions ended elsewhere).
    pub fn forget_user(&self, user_id: Uuid) {
        let mut inner = self.lock();
        inner.revocations += 1;
        inner.entries.retain(|_, entry| entry.session.user_id != user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use borcelle_store::users::Role;

    fn found(user_id: Uuid, last_seen: chrono::Duration, expires_in: chrono::Duration) -> FoundSession {
        let now = Utc::now();
        FoundSession {
            session: ActiveSession {
                user_id,
                email: "someone@example.com".to_owned(),
                display_name: "Someone".to_owned(),
                role: Role::User,
                time_zone: None,
                csrf_token: "csrf".to_owned(),
                last_seen_at: now - last_seen,
            },
            expires_at: now + expires_in,
        }
    }

    const IDLE: Duration = Duration::from_secs(48 * 3600);

    #[test]
    fn a_session_read_just_now_is_served_from_memory() {
        let cache = SessionCache::default();
        let ticket = cache.ticket();
        cache.insert(ticket, b"a", &found(Uuid::now_v7(), chrono::Duration::zero(), chrono::Duration::days(1)));
        assert!(cache.get(b"a", IDLE).is_some());
        assert!(cache.get(b"b", IDLE).is_none());
    }

    #[test]
    fn a_session_past_its_absolute_or_idle_expiry_is_not_served() {
        let cache = SessionCache::default();
        let ticket = cache.ticket();
        cache.insert(
            ticket,
            b"absolute",
            &found(Uuid::now_v7(), chrono::Duration::zero(), -chrono::Duration::seconds(1)),
        );
        let ticket = cache.ticket();
        cache.insert(ticket, b"idle", &found(Uuid::now_v7(), chrono::Duration::hours(49), chrono::Duration::days(1)));
        assert!(cache.get(b"absolute", IDLE).is_none());
        assert!(cache.get(b"idle", IDLE).is_none());
    }

    #[test]
    fn forgetting_a_session_or_its_user_takes_effect_at_once() {
        let cache = SessionCache::default();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        for (key, user) in [(&b"a1"[..], alice), (b"a2", alice), (b"b1", bob)] {
            let ticket = cache.ticket();
            cache.insert(ticket, key, &found(user, chrono::Duration::zero(), chrono::Duration::days(1)));
        }
        cache.forget_session(b"b1");
        assert!(cache.get(b"b1", IDLE).is_none());
        cache.forget_user(alice);
        assert!(cache.get(b"a1", IDLE).is_none() && cache.get(b"a2", IDLE).is_none());
    }

    #[test]
    fn a_lookup_that_raced_with_a_revocation_is_not_kept() {
        let cache = SessionCache::default();
        let user = Uuid::now_v7();
        let ticket = cache.ticket();
        // The row was read, then the session was ended before the reader stored it.
        cache.forget_user(user);
        cache.insert(ticket, b"a", &found(user, chrono::Duration::zero(), chrono::Duration::days(1)));
        assert!(cache.get(b"a", IDLE).is_none());
    }
}
