//! Fixed-window counters in PostgreSQL, shared by every replica.

use sqlx::PgExecutor;

/// A counter's state inside its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub hits: i32,
    /// Seconds until the window ends.
    pub resets_in_secs: u64,
}

/// Counts one event against `key` and returns the window it fell in.
pub async fn hit(db: impl PgExecutor<'_>, key: &str, window_secs: f64) -> crate::Result<Window> {
    let row = sqlx::query!(
        "INSERT INTO rate_limits AS r (key, window_start, hits) VALUES ($1, now(), 1)
         ON CONFLICT (key) DO UPDATE SET
             hits = CASE WHEN r.window_start <= now() - make_interval(secs => $2) THEN 1 ELSE r.hits + 1 END,
             window_start = CASE WHEN r.window_start <= now() - make_interval(secs => $2) THEN now() ELSE r.window_start END
         RETURNING hits, greatest(0, extract(epoch FROM window_start + make_interval(secs => $2) - now()))::float8 AS \"resets_in!\"",
        key,
        window_secs
    )
    .fetch_one(db)
    .await?;
    Ok(Window { hits: row.hits, resets_in_secs: row.resets_in.ceil() as u64 })
}

/// The current window of `key` without counting anything; `None` when it is empty or over.
pub async fn peek(db: impl PgExecutor<'_>, key: &str, window_secs: f64) -> crate::Result<Option<Window>> {
    let row = sqlx::query!(
        "SELECT hits, extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8 AS \"resets_in!\"
         FROM rate_limits WHERE key = $1 AND window_start > now() - make_interval(secs => $2)",
        key,
        window_secs
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Window { hits: r.hits, resets_in_secs: r.resets_in.ceil() as u64 }))
}

/// Takes back one event counted by [`hit`] (an attempt that turned out not to be a failure).
pub async fn release(db: impl PgExecutor<'_>, key: &str) -> crate::Result<()> {
    sqlx::query!("UPDATE rate_limits SET hits = greatest(hits - 1, 0) WHERE key = $1", key).execute(db).await?;
    Ok(())
}

pub async fn clear(db: impl PgExecutor<'_>, key: &str) -> crate::Result<()> {
    sqlx::query!("DELETE FROM rate_limits WHERE key = $1", key).execute(db).await?;
    Ok(())
}

/// Removes counters whose window ended long ago.
pub async fn delete_stale(db: impl PgExecutor<'_>, older_than_secs: f64) -> crate::Result<u64> {
    let done =
        sqlx::query!("DELETE FROM rate_limits WHERE window_start < now() - make_interval(secs => $1)", older_than_secs)
            .execute(db)
            .await?;
    Ok(done.rows_affected())
}
