//! The validating admission webhook: what it refuses and why (the reviews an API server sends,
//! with objects built from the crate's typed resources), its TLS (a certificate of its own, or
//! cert-manager's files re-read when renewed), and setting up its certificate and CA bundle
//! against a mock API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::http::Method;
use borcelle_crds::Broadcast;
use borcelle_operator::webhook::{self, CertSource};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};
use support::*;
use tokio_util::sync::CancellationToken;

/// The review an API server sends when `object` of `kind` is created.
fn review(kind: &str, resource: &str, operation: &str, object: Value) -> AdmissionReview<DynamicObject> {
    serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": "crm.borcelle.io", "version": "v1alpha1", "kind": kind },
            "resource": { "group": "crm.borcelle.io", "version": "v1alpha1", "resource": resource },
            "name": object["metadata"]["name"],
            "namespace": NS,
            "operation": operation,
            "userInfo": { "username": "admin" },
            "object": if operation == "DELETE" { Value::Null } else { object.clone() },
            "oldObject": if operation == "DELETE" { object } else { Value::Null },
            "dryRun": false,
        }
    }))
    .unwrap()
}

/// `(allowed, message)` of the webhook's answer.
fn answer(review: AdmissionReview<DynamicObject>) -> (bool, String) {
    let answered = serde_json::to_value(webhook::validate(review)).unwrap();
    assert_eq!(answered["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002", "the uid is echoed");
    let allowed = answered["response"]["allowed"].as_bool().unwrap();
    (allowed, answered["response"]["status"]["message"].as_str().unwrap_or_default().to_owned())
}

fn reminder_with(schedule: &str, time_zone: Option<&str>) -> Value {
    let mut spec = reminder_spec(schedule);
    spec.time_zone = time_zone.map(str::to_owned);
    serde_json::to_value(reminder("weekly-review", spec)).unwrap()
}

#[test]
fn unschedulable_reminders_are_refused_with_the_reason_and_good_ones_pass() {
    let refused = [
        ("not a cron", None, "five fields"),
        ("0 0 9 * * 1", None, "five fields"),
        ("61 * * * *", None, "61 is outside 0-59"),
        ("1/4294967295 * * * *", None, "a step must be between 1 and 59"),
        ("0 9 * * *", Some("Mars/Olympus_Mons"), "Mars/Olympus_Mons"),
    ];
    for (schedule, zone, reason) in refused {
        let (allowed, message) =
            answer(review("ScheduledReminder", "scheduledreminders", "CREATE", reminder_with(schedule, zone)));
        assert!(!allowed, "{schedule:?} {zone:?} is refused");
        assert!(message.contains(reason), "{schedule:?}: {message}");
    }
    for (schedule, zone) in [("0 9 * * 1-5", Some("Europe/Berlin")), ("@daily", None), ("*/15 * * * *", None)] {
        let (allowed, message) =
            answer(review("ScheduledReminder", "scheduledreminders", "UPDATE", reminder_with(schedule, zone)));
        assert!(allowed, "{schedule:?}: {message}");
    }
    let mut two_lines = reminder_spec("0 9 * * *");
    two_lines.subject = "Weekly\r\nBcc: victim@example.org".to_owned();
    let object = serde_json::to_value(reminder("weekly-review", two_lines)).unwrap();
    let (allowed, message) = answer(review("ScheduledReminder", "scheduledreminders", "CREATE", object.clone()));
    assert!(!allowed && message.contains("spec.subject"), "{message}");
    // Deleting is never refused, whatever the object holds.
    assert!(answer(review("ScheduledReminder", "scheduledreminders", "DELETE", object)).0);
}

/// The review of an update from `old` to `new`.
fn update(old: Value, new: Value) -> AdmissionReview<DynamicObject> {
    let mut review = serde_json::to_value(review("ScheduledReminder", "scheduledreminders", "UPDATE", new)).unwrap();
    review["request"]["oldObject"] = old;
    serde_json::from_value(review).unwrap()
}

#[test]
fn an_object_stored_before_the_webhook_can_still_be_relabelled_and_deleted_but_not_given_a_new_bad_spec() {
    // Stored before the webhook was installed (or before a rule tightened): never schedulable.
    let stored = reminder_with("61 * * * *", None);
    let mut relabelled = stored.clone();
    relabelled["metadata"]["labels"] = json!({ "team": "sales" });
    assert!(answer(update(stored.clone(), relabelled)).0, "a label change leaves the spec alone");
    let mut going = stored.clone();
    going["metadata"]["finalizers"] = json!([]);
    going["metadata"]["deletionTimestamp"] = json!("2026-11-24T09:00:00Z");
    assert!(answer(update(stored.clone(), going)).0, "a finalizer is removed from an object being deleted");
    // A spec that changes is judged, from whatever it was.
    let (allowed, message) = answer(update(stored.clone(), reminder_with("62 * * * *", None)));
    assert!(!allowed && message.contains("62 is outside 0-59"), "{message}");
    assert!(answer(update(stored, reminder_with("0 * * * *", None))).0, "a fix is let through");
}

#[test]
fn unschedulable_broadcasts_are_refused_too() {
    let mut spec = broadcast_spec();
    spec.schedule = Some("every monday".to_owned());
    let bad: Broadcast = broadcast("weekly-news", spec, now());
    let (allowed, message) = answer(review("Broadcast", "broadcasts", "CREATE", serde_json::to_value(bad).unwrap()));
    assert!(!allowed && message.contains("five fields"), "{message}");
    let good: Broadcast = broadcast("maintenance", broadcast_spec(), now());
    assert!(answer(review("Broadcast", "broadcasts", "CREATE", serde_json::to_value(good).unwrap())).0);
}

/// A client that trusts `ca` (PEM).
fn client_trusting(ca: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca.as_bytes()).unwrap();
    reqwest::Client::builder().add_root_certificate(ca).use_rustls_tls().build().unwrap()
}

async fn post_review(client: &reqwest::Client, port: u16) -> reqwest::Result<Value> {
    let body = serde_json::to_value(review(
        "ScheduledReminder",
        "scheduledreminders",
        "CREATE",
        reminder_with("61 * * * *", None),
    ))
    .unwrap();
    client.post(format!("https://localhost:{port}{}", webhook::PATH)).json(&body).send().await?.json().await
}

#[tokio::test]
async fn the_webhook_is_served_over_tls_with_its_own_ca_and_with_renewed_cert_manager_files() {
    // A certificate of its own.
    let pems = webhook::self_signed(&["localhost".to_owned()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let config = webhook::tls_config(CertSource::Pems(pems.clone())).unwrap();
    tokio::spawn(webhook::serve(listener, webhook::router(), config, stop.clone()));
    let answered = post_review(&client_trusting(&pems.ca), port).await.unwrap();
    assert_eq!(answered["response"]["allowed"], false);
    let stranger = webhook::self_signed(&["localhost".to_owned()]).unwrap();
    assert!(post_review(&client_trusting(&stranger.ca), port).await.is_err(), "another CA is not trusted");
    stop.cancel();

    // cert-manager's files: renewed in place, served without a restart.
    let dir = std::env::temp_dir().join(format!("borcelle-webhook-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |pems: &webhook::Pems| {
        std::fs::write(dir.join("tls.crt"), &pems.cert).unwrap();
        std::fs::write(dir.join("tls.key"), &pems.key).unwrap();
    };
    let first = webhook::self_signed(&["localhost".to_owned()]).unwrap();
    write(&first);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let config = webhook::tls_config(CertSource::Files(dir.clone())).unwrap();
    tokio::spawn(webhook::serve(listener, webhook::router(), config, stop.clone()));
    assert!(post_review(&client_trusting(&first.ca), port).await.is_ok());
    // File times have a coarse resolution on some file systems.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let renewed = webhook::self_signed(&["localhost".to_owned()]).unwrap();
    write(&renewed);
    assert!(post_review(&client_trusting(&renewed.ca), port).await.is_ok(), "the renewed certificate is served");
    stop.cancel();
    let _ = std::fs::remove_dir_all(dir);
}

fn configuration(ca: Option<&str>) -> ValidatingWebhookConfiguration {
    let webhook = |name: &str| ValidatingWebhook {
        name: name.to_owned(),
        admission_review_versions: vec!["v1".to_owned()],
        side_effects: "None".to_owned(),
        client_config: WebhookClientConfig {
            ca_bundle: ca.map(|ca| k8s_openapi::ByteString(ca.as_bytes().to_vec())),
            ..WebhookClientConfig::default()
        },
        ..ValidatingWebhook::default()
    };
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some("borcelle-operator".to_owned()),
            resource_version: Some("7".to_owned()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![webhook("scheduledreminders.crm.borcelle.io"), webhook("broadcasts.crm.borcelle.io")]),
    }
}

#[tokio::test]
async fn the_first_replica_creates_the_certificate_and_publishes_its_ca_the_next_reuses_them() {
    let names = webhook::service_names("borcelle-operator-webhook", NS);
    assert!(names.contains(&format!("borcelle-operator-webhook.{NS}.svc")));
    let secrets = format!("/api/v1/namespaces/{NS}/secrets");
    const CONFIGURATION: &str =
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/borcelle-operator";

    let (ctx, server) = context(now());
    let client = ctx.client.clone();
    let created_secret = secrets.clone();
    let (pems, (stored, published)) = verify_with(
        server,
        |mut server| async move {
            server.expect(Method::GET, &format!("{created_secret}/webhook-tls")).await.respond_error(404, "NotFound");
            let create = server.expect(Method::POST, &created_secret).await;
            let stored = create.body.clone();
            assert_eq!(stored["type"], "kubernetes.io/tls");
            create.respond_created();
            server.expect(Method::GET, CONFIGURATION).await.respond(200, &configuration(None));
            let replace = server.expect(Method::PUT, CONFIGURATION).await;
            let published = replace.body.clone();
            replace.respond(200, &published);
            (server, (stored, published))
        },
        async {
            let pems = webhook::secret_certificate(client.clone(), NS, "webhook-tls", &names).await.unwrap();
            webhook::publish_ca(client.clone(), "borcelle-operator", &pems.ca).await.unwrap();
            pems
        },
    )
    .await;
    let decoded = |key: &str| {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(stored["data"][key].as_str().unwrap()).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        (decoded("ca.crt"), decoded("tls.crt"), decoded("tls.key")),
        (pems.ca.clone(), pems.cert.clone(), pems.key.clone())
    );
    assert_eq!(published["metadata"]["resourceVersion"], "7", "written over the version read");
    use base64::Engine;
    let bundle = base64::engine::general_purpose::STANDARD.encode(pems.ca.as_bytes());
    for hook in published["webhooks"].as_array().unwrap() {
        assert_eq!(hook["clientConfig"]["caBundle"], bundle);
    }

    // The next replica (or a restart) finds both in place: it creates and writes nothing.
    let existing = k8s_openapi::api::core::v1::Secret {
        data: Some(
            [("ca.crt", &pems.ca), ("tls.crt", &pems.cert), ("tls.key", &pems.key)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    let (ctx, server) = context(now());
    let client = ctx.client.clone();
    let ca = pems.ca.clone();
    let again = verify(
        server,
        |mut server| async move {
            server.expect(Method::GET, &format!("{secrets}/webhook-tls")).await.respond(200, &existing);
            server.expect(Method::GET, CONFIGURATION).await.respond(200, &configuration(Some(&ca)));
            server
        },
        async {
            let names = webhook::service_names("borcelle-operator-webhook", NS);
            let pems = webhook::secret_certificate(client.clone(), NS, "webhook-tls", &names).await.unwrap();
            webhook::publish_ca(client.clone(), "borcelle-operator", &pems.ca).await.unwrap();
            pems
        },
    )
    .await;
    assert_eq!(again, pems);
}
