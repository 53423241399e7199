//! The wiring: leader election, controllers whose caches sync, readiness, and a graceful
//! shutdown that releases the Lease, against a small in-process API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use borcelle_operator::context::{Context, JobSettings, system_clock};
use borcelle_operator::leader::LeaseSettings;
use borcelle_operator::metrics::Metrics;
use borcelle_operator::run::{RunSettings, run};
use borcelle_operator::server::Health;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

fn json_response(code: u16, body: &Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
}

/// Empty lists (answered after `list_delay`, as a busy API server does), watches that stay open,
/// and one Lease.
fn api_server(lease: Arc<Mutex<Option<Value>>>, list_delay: Duration) -> kube::Client {
    slow_api_server(lease, list_delay, Duration::ZERO)
}

/// [`api_server`] whose Lease requests also take `lease_delay`.
fn slow_api_server(lease: Arc<Mutex<Option<Value>>>, list_delay: Duration, lease_delay: Duration) -> kube::Client {
    let service = tower::service_fn(move |request: Request<kube::client::Body>| {
        let lease = lease.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let response = if path.starts_with(LEASE) {
                tokio::time::sleep(lease_delay).await;
                let mut lease = lease.lock().unwrap();
                match parts.method.as_str() {
                    "GET" => match lease.as_ref() {
                        Some(l) => json_response(200, l),
                        None => json_response(404, &json!({"kind": "Status", "code": 404, "reason": "NotFound"})),
                    },
                    _ => {
                        let mut stored: Value = serde_json::from_slice(&bytes).unwrap();
                        let version = lease.as_ref().map_or(0, |l: &Value| {
                            l["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap()
                        });
                        stored["metadata"]["resourceVersion"] = json!((version + 1).to_string());
                        *lease = Some(stored.clone());
                        json_response(200, &stored)
                    }
                }
            } else if query.contains("watch=true") {
                // A watch that stays open and quiet.
                Response::new(Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>()))
            } else {
                tokio::time::sleep(list_delay).await;
                json_response(
                    200,
                    &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": []}),
                )
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    kube::Client::new(service, "default")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_runs_the_controllers_becomes_ready_and_releases_the_lease_on_shutdown() {
    let lease = Arc::new(Mutex::new(None));
    let client = api_server(lease.clone(), Duration::ZERO);
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(Context::new(client, JobSettings::default(), system_clock(), metrics.clone()));
    let mut settings = LeaseSettings::new("borcelle-operator", "ops", "operator-0_abcd");
    settings.retry_period = Duration::from_millis(100);
    let health = Health::default();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run(
        ctx,
        RunSettings { namespace: None, lease: Some(settings) },
        health.clone(),
        shutdown.clone(),
    ));

    tokio::time::timeout(Duration::from_secs(10), async {
        while !health.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ready within 10 s");
    assert!(health.is_leader());
    assert!(metrics.encode().unwrap().contains("borcelle_operator_leader 1"));
    let holder = |lease: &Mutex<Option<Value>>| {
        lease.lock().unwrap().as_ref().and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    assert_eq!(holder(&lease).as_deref(), Some("operator-0_abcd"));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops within 10 s").unwrap();
    assert_eq!(holder(&lease), None, "the lease is released");
}

/// On a real API server the initial lists take a while: the controller and a readiness task both
/// waited on the same store, kube-runtime woke only the last one to wait, and the leader stayed
/// NotReady forever. Readiness now comes from the watch streams themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_turns_ready_when_the_initial_lists_are_slow() {
    let lease = Arc::new(Mutex::new(None));
    let client = api_server(lease.clone(), Duration::from_millis(500));
    let ctx = Arc::new(Context::new(client, JobSettings::default(), system_clock(), Arc::new(Metrics::new())));
    let health = Health::default();
    let shutdown = CancellationToken::new();
    let running =
        tokio::spawn(run(ctx, RunSettings { namespace: None, lease: None }, health.clone(), shutdown.clone()));
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while !health.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    assert!(ready.is_ok(), "the leader is ready once its caches hold the initial lists");
}

/// A busy API server answers Lease requests slower than the retry period. A renewal capped at one
/// retry period timed out every time, and the leader lost its Lease (twice, in a startup with
/// 1,000 resources); a renewal may now take until the renew deadline, and leadership holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lease_renewal_keeps_leadership_while_it_can_still_succeed() {
    let lease = Arc::new(Mutex::new(None));
    let client = slow_api_server(lease.clone(), Duration::ZERO, Duration::from_millis(300));
    let ctx = Arc::new(Context::new(client, JobSettings::default(), system_clock(), Arc::new(Metrics::new())));
    let mut settings = LeaseSettings::new("borcelle-operator", "ops", "operator-0_slow");
    settings.retry_period = Duration::from_millis(100);
    settings.renew_deadline = Duration::from_millis(1000);
    settings.lease_duration = Duration::from_millis(1500);
    let health = Health::default();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run(
        ctx,
        RunSettings { namespace: None, lease: Some(settings) },
        health.clone(),
        shutdown.clone(),
    ));
    let became = tokio::time::timeout(Duration::from_secs(5), async {
        while !health.is_leader() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut lost = 0;
    if became.is_ok() {
        // Three seconds of renewals, each slower than the retry period.
        for _ in 0..60 {
            if !health.is_leader() {
                lost += 1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    assert!(became.is_ok(), "the Lease is taken although each request takes longer than the retry period");
    assert_eq!(lost, 0, "leadership held through slow renewals");
}
