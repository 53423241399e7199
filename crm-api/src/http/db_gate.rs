//! Fails requests fast while the database is down.
//!
//! While PostgreSQL refuses connections, sqlx keeps retrying until the pool's acquire timeout, so
//! without this every request of an outage would wait that long (5 s by default) for its 503.
//! Once a request meets an unavailable database the gate closes: one request at a time still goes
//! through, to find out whether the database is back, and every other answers 503 at once. The
//! first request that gets through without meeting an unavailable database opens it again.
//! It guards the JSON API (`/api/…`); pages still wait for the pool and render their own error.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::state::AppState;

/// Whether the database was unavailable to the last request that reached it.
#[derive(Debug, Default)]
pub struct DbGate {
    closed: AtomicBool,
    probing: AtomicBool,
}

/// Set on a response whose request met an unavailable database ([`AppError`] sets it).
#[derive(Debug, Clone, Copy)]
pub struct DatabaseUnavailable;

/// Clears the probe flag however the probing request ends (answered, or dropped mid-way).
struct Probe<'a>(&'a DbGate);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

impl DbGate {
    /// Whether a request may go through now; `Some` holds the probe while it runs.
    fn admit(&self) -> Result<Option<Probe<'_>>, ()> {
        if !self.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        match self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(Some(Probe(self))),
            Err(_) => Err(()),
        }
    }

    fn saw(&self, response: &Response) {
        let unavailable = response.extensions().get::<DatabaseUnavailable>().is_some();
        if unavailable != self.closed.load(Ordering::Acquire) {
            self.closed.store(unavailable, Ordering::Release);
            if unavailable {
                tracing::warn!("the database is unavailable: answering 503 at once until a request gets through");
            } else {
                tracing::info!("the database is available again");
            }
        }
    }
}

/// Middleware: answers 503 at once while the gate is closed and another request is probing.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let gate = &state.db_gate;
    let Ok(_probe) = gate.admit() else {
        return AppError::from(borcelle_engine::Error::Unavailable("the database is unavailable".into()))
            .into_response();
    };
    let response = next.run(request).await;
    gate.saw(&response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(database_unavailable: bool) -> Response {
        let mut response = Response::default();
        if database_unavailable {
            response.extensions_mut().insert(DatabaseUnavailable);
        }
        response
    }

    #[test]
    fn once_the_database_is_unavailable_one_request_probes_and_the_others_fail_at_once() {
        let gate = DbGate::default();
        assert!(matches!(gate.admit(), Ok(None)), "open: everyone goes through");
        gate.saw(&answered(true));
        let probe = gate.admit().expect("the first request probes");
        assert!(probe.is_some());
        assert!(gate.admit().is_err(), "others fail at once while it probes");
        drop(probe);
        gate.saw(&answered(true));
        let probe = gate.admit().expect("the next request probes again");
        drop(probe);
        gate.saw(&answered(false));
        assert!(matches!(gate.admit(), Ok(None)), "open again once a request got through");
    }
}
