//! Leader election against an in-memory Lease that behaves like the API server's (optimistic
//! concurrency on resourceVersion): two electors never both count themselves leader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, Request, Response};
use borcelle_operator::leader::{LeaseElector, LeaseSettings};
use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::client::Body;
use serde_json::{Value, json};

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

/// The stored Lease and its resourceVersion counter; `writes` counts accepted writes.
#[derive(Default)]
struct LeaseServer {
    lease: Option<Value>,
    version: u64,
    writes: u64,
    conflicts: u64,
}

fn response(code: u16, body: &Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
}

fn failure(code: u16, reason: &str) -> Response<Body> {
    response(code, &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason}))
}

impl LeaseServer {
    fn handle(&mut self, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
        let named = format!("{PATH}/borcelle-operator");
        match (method.as_str(), path) {
            ("GET", p) if p == named => match &self.lease {
                Some(lease) => response(200, lease),
                None => failure(404, "NotFound"),
            },
            ("POST", PATH) => {
                if self.lease.is_some() {
                    self.conflicts += 1;
                    return failure(409, "AlreadyExists");
                }
                self.store(serde_json::from_slice(body).unwrap());
                response(201, self.lease.as_ref().unwrap())
            }
            ("PUT", p) if p == named => {
                let lease: Value = serde_json::from_slice(body).unwrap();
                let current = self.lease.as_ref().map(|l| l["metadata"]["resourceVersion"].clone());
                if current != Some(lease["metadata"]["resourceVersion"].clone()) {
                    self.conflicts += 1;
                    return failure(409, "Conflict");
                }
                self.store(lease);
                response(200, self.lease.as_ref().unwrap())
            }
            _ => failure(405, "MethodNotAllowed"),
        }
    }

    fn store(&mut self, mut lease: Value) {
        self.version += 1;
        self.writes += 1;
        lease["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.lease = Some(lease);
    }

    fn holder(&self) -> Option<String> {
        self.lease.as_ref().and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }
}

/// A client of `server` that fails every request while `cut` is set (a network partition).
fn client(server: Arc<Mutex<LeaseServer>>, cut: Arc<AtomicBool>) -> kube::Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let server = server.clone();
        let cut = cut.clone();
        async move {
            if cut.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("partitioned"));
            }
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.map_err(std::io::Error::other)?;
            // Let the other elector's request interleave.
            tokio::task::yield_now().await;
            let response = server.lock().unwrap().handle(&parts.method, parts.uri.path(), &bytes);
            Ok::<_, std::io::Error>(response)
        }
    });
    kube::Client::new(service, "ops")
}

fn elector(server: &Arc<Mutex<LeaseServer>>, identity: &str) -> (LeaseElector, Arc<AtomicBool>) {
    let cut = Arc::new(AtomicBool::new(false));
    let api: Api<Lease> = Api::namespaced(client(server.clone(), cut.clone()), "ops");
    (LeaseElector::new(api, LeaseSettings::new("borcelle-operator", "ops", identity)), cut)
}

#[tokio::test]
async fn two_electors_never_hold_the_lease_at_once() {
    let server = Arc::new(Mutex::new(LeaseServer::default()));
    let (mut a, a_cut) = elector(&server, "operator-a_1234");
    let (mut b, b_cut) = elector(&server, "operator-b_5678");
    let start = Instant::now();
    let mut leaders = Vec::new();
    let mut a_running = true;
    let mut b_running = true;

    // Simulated time in steps of 500 ms; both electors take a round every 2 s, concurrently,
    // so that their reads and writes interleave.
    for step in 0u64..400 {
        let now = start + Duration::from_millis(500 * step);
        let seconds = step / 2;
        // 20 s – 60 s: A is cut off from the API server. 100 s: B crashes. 120 s – 150 s: A
        // crashes and restarts as a fresh candidate of the same pod name and a new suffix.
        a_cut.store((20..60).contains(&seconds), Ordering::SeqCst);
        if seconds == 100 {
            b_running = false;
        }
        if seconds == 120 {
            a_running = false;
        }
        if seconds == 150 && !a_running {
            a = elector(&server, "operator-a_9abc").0;
            a_running = true;
        }
        if step % 4 == 0 {
            let wall = Utc::now();
            let (ra, rb) = tokio::join!(
                async {
                    if a_running {
                        let _ = a.try_acquire_or_renew(now, wall).await;
                    }
                },
                async {
                    if b_running {
                        let _ = b.try_acquire_or_renew(now, wall).await;
                    }
                },
            );
            let _ = (ra, rb);
        }
        for probe in [now, now + Duration::from_millis(250)] {
            let a_leads = a_running && a.is_leader(probe);
            let b_leads = b_running && b.is_leader(probe);
            assert!(!(a_leads && b_leads), "both lead at step {step}");
        }
        let leader = match (a_running && a.is_leader(now), b_running && b.is_leader(now)) {
            (true, _) => "a",
            (_, true) => "b",
            _ => "-",
        };
        if leaders.last() != Some(&leader) {
            leaders.push(leader);
        }
    }
    // A first; cut off, it steps down before B takes over; B crashes and A takes over; A crashes
    // and its restarted successor takes over once the old record has expired. Always with a gap.
    assert_eq!(leaders, ["a", "-", "b", "-", "a", "-", "a"]);
    let _ = b_cut;
    let server = server.lock().unwrap();
    assert_eq!(server.holder().as_deref(), Some("operator-a_9abc"));
}

#[tokio::test]
async fn only_one_of_two_simultaneous_candidates_wins_and_a_released_lease_is_taken_at_once() {
    let server = Arc::new(Mutex::new(LeaseServer::default()));
    let (mut a, _) = elector(&server, "operator-a_1234");
    let (mut b, _) = elector(&server, "operator-b_5678");
    let now = Instant::now();
    let wall = Utc::now();
    let (won_a, won_b) = tokio::join!(a.try_acquire_or_renew(now, wall), b.try_acquire_or_renew(now, wall));
    let (won_a, won_b) = (won_a.unwrap(), won_b.unwrap());
    assert!(won_a ^ won_b, "exactly one wins: a={won_a} b={won_b}");
    assert_eq!(server.lock().unwrap().conflicts, 1);
    let (leader, other) = if won_a { (&mut a, &mut b) } else { (&mut b, &mut a) };

    // The other keeps losing while the leader renews.
    for second in 1..30u64 {
        let now = now + Duration::from_secs(second);
        let wall = wall + chrono::Duration::seconds(second as i64);
        if second % 2 == 0 {
            assert!(leader.try_acquire_or_renew(now, wall).await.unwrap());
        }
        assert!(!other.try_acquire_or_renew(now, wall).await.unwrap());
    }
    // On shutdown the leader releases the Lease; the other takes it on its next round.
    leader.release(wall).await.unwrap();
    assert!(!leader.is_leader(now + Duration::from_secs(30)));
    assert_eq!(server.lock().unwrap().holder(), None);
    assert!(other.try_acquire_or_renew(now + Duration::from_secs(31), wall).await.unwrap());
    assert!(other.is_leader(now + Duration::from_secs(31)));
}
