//! A few PostgreSQL connections for the busiest read (a page of contacts), handed back without
//! the round trip sqlx's pool makes for each.
//!
//! sqlx's pool pings every connection as it comes back (a Sync and PostgreSQL's answer to it: one
//! more round trip per request, for serve and for PostgreSQL), to find connections left in the
//! middle of a statement by a query whose future was dropped. A page of contacts spent about 7 %
//! of serve's CPU on it. Here a connection goes back only when its statement ran to its end,
//! which the caller says with [`LaneConnection::finished`]; dropped any other way (a request
//! abandoned mid-query, an I/O error), it is closed instead and the next caller opens a new one.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::database_unavailable;

pub struct Lane {
    options: PgConnectOptions,
    idle: Mutex<Vec<PgConnection>>,
    /// One per connection, open or not.
    permits: Semaphore,
    acquire_timeout: Duration,
}

impl Lane {
    /// At most `size` connections, opened as the pool opens its own, when first needed.
    pub fn new(pool: &PgPool, size: usize, acquire_timeout: Duration) -> Self {
        Self {
            options: (*pool.connect_options()).clone(),
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size.max(1)),
            acquire_timeout,
        }
    }

    /// An idle connection, or a new one; `PoolTimedOut` when none is free within the timeout,
    /// as the pool answers (a 503 to the client).
    pub async fn acquire(&self) -> crate::Result<LaneConnection<'_>> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => tokio::time::timeout_at(deadline, PgConnection::connect_with(&self.options))
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??,
        };
        Ok(LaneConnection { lane: self, conn: Some(conn), finished: false, _permit: permit })
    }

    /// Closes every idle connection: one failed in a way that says the others are stale too (the
    /// server restarted), so the next callers open fresh ones instead of failing one by one.
    pub fn close_idle(&self) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Connections open and idle (for tests).
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A connection of the lane; back to it on drop once [`finished`](Self::finished), else closed.
pub struct LaneConnection<'a> {
    lane: &'a Lane,
    conn: Option<PgConnection>,
    finished: bool,
    _permit: SemaphorePermit<'a>,
}

impl LaneConnection<'_> {
    /// Its statements ran to their end (with or without a database error): it can be reused.
    pub fn finished(mut self) {
        self.finished = true;
    }

    /// Hands the connection back as its statement ended (`error`: how it failed, if it did). It
    /// serves again unless it failed itself: an I/O error, or PostgreSQL saying the session is
    /// over (shutting down, a connection exception), which makes the idle ones suspect too.
    pub fn settle(self, error: Option<&crate::Error>) {
        let reusable = match error.map(crate::Error::source_error) {
            None => true,
            Some(sqlx::Error::Database(db)) => !db.code().is_some_and(|code| database_unavailable(&code)),
            Some(_) => false,
        };
        if reusable {
            self.finished();
        } else {
            let lane = self.lane;
            drop(self);
            lane.close_idle();
        }
    }
}

impl Deref for LaneConnection<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // Present until drop.
        self.conn.as_ref().unwrap_or_else(|| unreachable!("a lane connection is taken only on drop"))
    }
}

impl DerefMut for LaneConnection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!("a lane connection is taken only on drop"))
    }
}

impl Drop for LaneConnection<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.finished
        {
            self.lane.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
        // Otherwise the connection is dropped, which closes its socket.
    }
}
