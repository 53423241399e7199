//! The `borcelle` binary itself: zero-configuration start, graceful shutdown, `migrate`, `admin`.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_borcelle");

/// `borcelle serve` on a fresh database name, with nothing else configured.
struct Served {
    child: Child,
    base: String,
    db_name: String,
    /// serve's log (its standard error).
    log: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop_database(&self.db_name);
        let _ = std::fs::remove_file(&self.log);
    }
}

async fn serve_binary() -> Served {
    serve_binary_with(None, &[]).await
}

/// `serve` started from a shell that first lowers its soft open-files limit (as a login shell's 1,024 would be).
async fn serve_binary_with_soft_open_files(soft_limit: Option<u32>) -> Served {
    serve_binary_with(soft_limit, &[]).await
}

/// `serve` with a soft open-files limit set first, when given, and these variables besides.
async fn serve_binary_with(soft_limit: Option<u32>, envs: &[(&str, String)]) -> Served {
    let (db_name, url) = fresh_database();
    let port = free_port();
    let log = std::env::temp_dir().join(unique("borcelle-serve-log-"));
    let mut command = match soft_limit {
        None => Command::new(BIN),
        Some(limit) => {
            let mut shell = Command::new("sh");
            shell.args(["-c", &format!("ulimit -Sn {limit} && exec \"$0\" \"$@\""), BIN]);
            shell
        }
    };
    let child = command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &url)
        .env("BORCELLE_LISTEN", format!("127.0.0.1:{port}"))
        .envs(envs.iter().map(|(key, value)| (*key, value)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start borcelle serve");
    let served = Served { child, base: format!("http://127.0.0.1:{port}"), db_name, log };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{}/readyz", served.base)).send().await
            && response.status() == 200
        {
            return served;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("borcelle serve did not become ready");
}

#[tokio::test]
async fn with_nothing_configured_serve_creates_the_database_and_a_user_can_sign_up_through_the_pages() {
    let served = serve_binary().await;
    let browser = browser_client();
    let origin = served.base.clone();
    let url = |path: &str| format!("{}{path}", served.base);

    assert_eq!(browser.get(url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(browser.get(url("/metrics")).send().await.unwrap().status(), 404, "no metrics on the public port");

    let form = [("email", "first@example.com"), ("display_name", "First"), ("password", PASSWORD)];
    let response = browser.post(url("/register")).header("Origin", &origin).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 303, "the answer is a page of its own (POST/redirect/GET)");

    // The dev outbox is the default transport. Its page is for administrators only: a visitor
    // can read nobody's mail. Whoever runs serve reads the verification link in its log.
    let outbox = browser.get(url("/api/v1/admin/outbox")).send().await.unwrap();
    assert_eq!(outbox.status(), 401, "a stranger cannot read the outbox");
    let page = browser.get(url("/outbox")).send().await.unwrap();
    assert!(!page.text().await.unwrap().contains("/verify?token="), "nor its page");
    let mut logged = String::new();
    for _ in 0..50 {
        logged = std::fs::read_to_string(&served.log).unwrap_or_default();
        if logged.contains("/verify?token=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = token_from_text(&logged, &url("/verify"));

    let response =
        browser.post(url("/verify")).header("Origin", &origin).form(&[("token", &token)]).send().await.unwrap();
    assert!(response.text().await.unwrap().contains("Email verified"));
    let response = browser
        .post(url("/login"))
        .header("Origin", &origin)
        .form(&[("email", "first@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let home = browser.get(url("/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("Welcome, First"));
}

#[tokio::test]
async fn metrics_are_served_on_the_operations_port_never_on_the_public_one() {
    let ops = free_port();
    let served = serve_binary_with(None, &[("BORCELLE_OPERATIONS_LISTEN", format!("127.0.0.1:{ops}"))]).await;
    let client = browser_client();
    assert_eq!(client.get(format!("{}/healthz", served.base)).send().await.unwrap().status(), 200);
    assert_eq!(client.get(format!("{}/metrics", served.base)).send().await.unwrap().status(), 404);
    let ops = format!("http://127.0.0.1:{ops}");
    let metrics = client.get(format!("{ops}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("borcelle_http_requests_total"), "the web's metrics: {metrics}");
    assert!(metrics.contains("borcelle_events_retained"), "the engine's metrics: {metrics}");
    let ready: Value = client.get(format!("{ops}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!((ready["status"].as_str(), ready["events"]["backend"].as_str()), (Some("ready"), Some("in-process")));
}

/// The soft and hard "Max open files" of a process, from /proc.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut fields = line.trim_start_matches("Max open files").split_whitespace();
    (fields.next().unwrap().to_owned(), fields.next().unwrap().to_owned())
}

#[tokio::test]
async fn serve_raises_its_open_files_limit_to_the_hard_limit() {
    // Every socket is a file: with a shell's soft limit of 1,024 serve would refuse the 1,025th tab.
    let served = serve_binary_with_soft_open_files(Some(256)).await;
    let (soft, hard) = open_files_limits(served.child.id());
    assert_eq!(soft, hard, "soft limit raised to the hard one");
    assert!(hard == "unlimited" || hard.parse::<u64>().unwrap() > 256, "hard limit {hard}");
}

#[tokio::test]
async fn sigterm_stops_serve_gracefully() {
    let mut served = serve_binary().await;
    let status = Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(exit) = served.child.try_wait().unwrap() {
            assert!(exit.success(), "serve exited with {exit}");
            let log = std::fs::read_to_string(&served.log).unwrap();
            assert!(log.contains("SIGTERM received") && log.contains("stopped"), "{log}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("serve did not exit within 10 s of SIGTERM");
}

fn borcelle(database_url: &str, args: &[&str], password: Option<&str>, stdin: Option<&str>) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).env("DATABASE_URL", database_url).env_remove("BORCELLE_ADMIN_PASSWORD");
    if let Some(password) = password {
        command.env("BORCELLE_ADMIN_PASSWORD", password);
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn admin_commands_create_verified_accounts_and_change_roles() {
    let mut app = spawn_app().await;
    let url = format!("{}/{}", server_url(), app.db_name);

    let created =
        borcelle(&url, &["admin", "create-user", "--email", "Boss@Example.com", "--admin"], Some(PASSWORD), None);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("created admin account"));
    let from_stdin = borcelle(
        &url,
        &["admin", "create-user", "--email", "piped@example.com", "--name", "Piped"],
        None,
        Some("a piped password\n"),
    );
    assert!(from_stdin.status.success(), "{}", String::from_utf8_lossy(&from_stdin.stderr));

    let session: Value = {
        app.login("boss@example.com", PASSWORD).await;
        app.get("/api/v1/auth/session").await.json().await.unwrap()
    };
    assert_eq!(session["user"]["role"], "admin");
    app.client = browser_client();
    assert_eq!(
        app.login("piped@example.com", "a piped password").await.status(),
        200,
        "created verified, password from stdin"
    );

    let demoted = borcelle(&url, &["admin", "demote", "--email", "boss@example.com"], None, None);
    assert!(demoted.status.success());
    let role: String =
        sqlx::query_scalar("SELECT role FROM users WHERE email = 'boss@example.com'").fetch_one(&app.db).await.unwrap();
    assert_eq!(role, "user");
    assert!(borcelle(&url, &["admin", "promote", "--email", "piped@example.com"], None, None).status.success());
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE email = 'piped@example.com'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(role, "admin");

    let duplicate = borcelle(&url, &["admin", "create-user", "--email", "boss@example.com"], Some(PASSWORD), None);
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    let short = borcelle(&url, &["admin", "create-user", "--email", "short@example.com"], Some("short"), None);
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 10 characters"));
    let missing = borcelle(&url, &["admin", "promote", "--email", "ghost@example.com"], None, None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account"));
}

#[test]
fn migrate_creates_and_migrates_a_missing_database() {
    let (name, url) = fresh_database();
    let output = Command::new(BIN).arg("migrate").env("DATABASE_URL", &url).output().unwrap();
    let ok = output.status.success();
    let again = Command::new(BIN).arg("migrate").env("DATABASE_URL", &url).output().unwrap();
    drop_database(&name);
    assert!(ok, "{}", String::from_utf8_lossy(&output.stderr));
    assert!(again.status.success(), "migrate is idempotent");
}

#[test]
fn help_documents_every_flag_with_its_environment_variable() {
    let output = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for var in [
        "DATABASE_URL",
        "BORCELLE_LISTEN",
        "BORCELLE_PUBLIC_URL",
        "BORCELLE_MAIL_TRANSPORT",
        "BORCELLE_SMTP_HOST",
        "BORCELLE_SMTP_TLS",
        "BORCELLE_MAILJET_API_KEY",
        "BORCELLE_MAILJET_SANDBOX",
        "BORCELLE_DEV_MODE",
        "BORCELLE_LOG_FORMAT",
    ] {
        assert!(help.contains(&format!("[env: {var}")), "{var} missing from serve --help:\n{help}");
    }
    let top = Command::new(BIN).arg("--help").output().unwrap();
    let top = String::from_utf8_lossy(&top.stdout);
    for command in ["serve", "migrate", "admin"] {
        assert!(top.contains(command), "{command} missing from --help");
    }
}

#[test]
fn a_misconfigured_transport_is_refused_at_start_with_what_to_set() {
    let output = Command::new(BIN)
        .args(["serve"])
        .env("BORCELLE_MAIL_TRANSPORT", "smtp")
        .env_remove("BORCELLE_SMTP_HOST")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("BORCELLE_SMTP_HOST"));
}

#[tokio::test]
async fn listening_beyond_loopback_keeps_the_outbox_closed_by_default() {
    let (db_name, url) = fresh_database();
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("BORCELLE_LISTEN", format!("0.0.0.0:{port}"))
        .env_remove("BORCELLE_DEV_MODE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut status = None;
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/api/v1/admin/outbox")).send().await {
            status = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    drop_database(&db_name);
    assert_eq!(status, Some(401), "the outbox needs an admin when others can reach the server");
}

/// Each line of a JSON log, parsed (a line that is not one JSON object fails the test).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: a JSON object per line: {line}")))
        .collect()
}

/// RUST_LOG picks the levels whichever filter reads it (target directives, or span directives too),
/// and the JSON format writes one object per line: `migrate` of a missing database says, at info,
/// that it created it.
#[test]
fn rust_log_sets_the_levels_of_the_json_log_lines() {
    let created = |rust_log: Option<&str>| -> Vec<Value> {
        let (name, url) = fresh_database();
        let mut command = Command::new(BIN);
        command.arg("migrate").env("DATABASE_URL", &url).env("BORCELLE_LOG_FORMAT", "json");
        match rust_log {
            Some(directives) => command.env("RUST_LOG", directives),
            None => command.env_remove("RUST_LOG"),
        };
        let output = command.output().unwrap();
        drop_database(&name);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        json_lines(&String::from_utf8_lossy(&output.stderr))
            .into_iter()
            .filter(|line| line["message"] == "created database")
            .collect()
    };
    for shown in [
        None,
        Some(""),
        Some("info"),
        Some("warn,borcelle_store=info"),
        Some("warn,[request]=debug,borcelle_store=info"),
    ] {
        let lines = created(shown);
        assert_eq!(lines.len(), 1, "RUST_LOG={shown:?}: {lines:?}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["target"], "borcelle_store::connect");
    }
    for hidden in ["warn", "info,borcelle_store=warn", "info,[request]=debug,borcelle_store=warn"] {
        assert_eq!(created(Some(hidden)), Vec::<Value>::new(), "RUST_LOG={hidden:?}");
    }
}

/// A span directive shows what happens inside that span only: with `warn,[request]=debug`, serve's
/// log has the debug lines of a request (tower-http's, inside the `request` span) and none of the
/// info lines of its start. (tracing's `Targets` filter would read `[request]` as a target's name,
/// match nothing and show neither.)
#[tokio::test]
async fn a_span_directive_in_rust_log_shows_the_debug_lines_of_requests_only() {
    let envs = [("BORCELLE_LOG_FORMAT", "json".to_owned()), ("RUST_LOG", "warn,[request]=debug".to_owned())];
    let served = serve_binary_with(None, &envs).await;
    let health = reqwest::get(format!("{}/healthz", served.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    // The request's last line is written as its response goes; give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = json_lines(&std::fs::read_to_string(&served.log).unwrap());
    assert!(
        lines.iter().any(|line| line["level"] == "DEBUG" && line["span"]["name"] == "request"),
        "a debug line inside the request's span: {lines:#?}"
    );
    assert!(
        lines.iter().all(|line| line["level"] != "INFO" || line["span"]["name"] == "request"),
        "no info line outside a request: {lines:#?}"
    );
}
