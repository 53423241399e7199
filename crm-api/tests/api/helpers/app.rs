//! The server under test: its own PostgreSQL database, its own server on a random port (and an
//! operations port for `/metrics`), a browser-like client, and the engine and scheduler the test
//! drives itself: nothing is delivered or scheduled behind its back unless it asks for a
//! background engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use borcelle::config::{
    AuthSettings, DatabaseSettings, DeliverySettings, HttpSettings, MailSettings, SchedulerBackend, Settings,
    StorageBackend, StorageSettings, TransportSettings,
};
use borcelle::startup::Application;
use borcelle_engine::accounts::Accounts;
use borcelle_engine::delivery::{DeliveryEngine, Drained};
use borcelle_engine::events::EventBus;
use borcelle_engine::messaging::Messaging;
use borcelle_engine::scheduler::Scheduler;
use borcelle_store::PgPool;
use borcelle_store::users::Role;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use url::Url;

pub const PASSWORD: &str = "correct horse battery staple";

/// The PostgreSQL server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("BORCELLE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// A fresh database name and its URL; the database itself is created by the code under test.
pub fn fresh_database() -> (String, String) {
    let name = unique("borcelle_test_");
    let url = format!("{}/{name}", server_url());
    (name, url)
}

/// Drops a test database, closing whatever still uses it.
pub fn drop_database(name: &str) {
    let name = name.to_owned();
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async move {
            if let Ok(pool) = PgPool::connect(&format!("{}/postgres", server_url())).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                    .execute(&pool)
                    .await;
                pool.close().await;
            }
        });
    })
    .join();
}

pub fn base_settings(database_url: &str, listen: SocketAddr) -> Settings {
    Settings {
        database: DatabaseSettings {
            url: SecretString::from(database_url.to_owned()),
            max_connections: 5,
            acquire_timeout: Duration::from_secs(5),
        },
        http: HttpSettings {
            listen,
            public_url: Url::parse(&format!("http://{listen}/")).expect("url"),
            extra_origins: Vec::new(),
            body_limit: 64 * 1024,
            trust_forwarded_for: false,
        },
        auth: AuthSettings::default(),
        mail: MailSettings {
            from_address: "noreply@borcelle.test".to_owned(),
            from_name: "Borcelle".to_owned(),
            transport: TransportSettings::Outbox,
            dkim: None,
        },
        dev_mode: true,
        delivery: DeliverySettings {
            // The test drives delivery ([`TestApp::deliver_all`]) and the scheduler
            // ([`TestApp::scheduler`]) itself; a test of the background loops turns them on.
            in_serve: false,
            scheduler: SchedulerBackend::Off,
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            ..DeliverySettings::default()
        },
        redis_url: None,
        storage: StorageSettings::local(std::env::temp_dir().join(unique("borcelle-files-"))),
        operations_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        consent: borcelle::config::ConsentSettings::default(),
        inbound: None,
        inbound_in_serve: true,
    }
}

/// A running server with its own database, and a browser-like client (cookies, no redirects).
pub struct TestApp {
    pub addr: SocketAddr,
    /// The SMTP receiver of inbound mail, when the settings turn it on.
    pub inbound_addr: Option<SocketAddr>,
    /// The server's parts that the test drives, when it runs in the test's process.
    server: Option<InProcess>,
    pub db: PgPool,
    pub db_name: String,
    pub client: reqwest::Client,
    /// CSRF token of the client's session, once logged in.
    pub csrf: Option<String>,
    /// `name=value` of the session cookie, once logged in (for WebSocket handshakes).
    pub session_cookie: Option<String>,
    /// The attachment directory, with the local store (removed at the end).
    pub files_dir: Option<PathBuf>,
}

/// What a test drives of a server in its own process.
struct InProcess {
    /// Where `/metrics` is served.
    ops_addr: SocketAddr,
    /// The server's delivery engine (see [`TestApp::deliver_all`]).
    engine: DeliveryEngine,
    /// The server's scheduler, run at the times the test chooses.
    scheduler: Scheduler,
    accounts: Accounts,
    /// The bus the server delivers live events from.
    events: EventBus,
    /// What queues the server's sends (and takes over stalled ones).
    messaging: Messaging,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop_database(&self.db_name);
        if let Some(dir) = &self.files_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn browser_client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server whose settings `adjust` may change (transport, limits, public URL…).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (db_name, url) = fresh_database();
    let mut settings = base_settings(&url, addr);
    adjust(&mut settings);
    let files_dir = match &settings.storage.backend {
        StorageBackend::Local { dir } if dir.starts_with(std::env::temp_dir()) => Some(dir.clone()),
        _ => None,
    };
    let db = borcelle_store::connect_and_migrate(&settings.database).await.expect("database");
    let app = Application::with_listener(settings, db.clone(), listener).await.expect("app");
    let ops_addr = app.operations_addr().expect("operations address").expect("an operations port");
    let inbound_addr = app.inbound_addr().expect("inbound address");
    let (engine, scheduler, accounts) = (app.delivery_engine(), app.scheduler(), app.state().accounts.clone());
    let events = app.state().events.clone();
    let messaging = app.state().messaging.clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        addr,
        inbound_addr,
        server: Some(InProcess { ops_addr, engine, scheduler, accounts, events, messaging }),
        db,
        db_name,
        client: browser_client(),
        csrf: None,
        session_cookie: None,
        files_dir,
    }
}

impl TestApp {
    /// A client of a `borcelle serve` child process on `addr` (its database pool is the test's own,
    /// for looking into the ledger): nothing to drive, the process runs its own engine.
    #[allow(dead_code)] // the drills' (they include this harness)
    pub fn of_process(addr: SocketAddr, db: PgPool, db_name: &str) -> TestApp {
        TestApp {
            addr,
            inbound_addr: None,
            server: None,
            db,
            db_name: db_name.to_owned(),
            client: browser_client(),
            csrf: None,
            session_cookie: None,
            files_dir: None,
        }
    }

    fn server(&self) -> &InProcess {
        self.server.as_ref().expect("a server in the test's process (not a child process)")
    }

    /// The server's scheduler, to run at the times the test chooses.
    pub fn scheduler(&self) -> &Scheduler {
        &self.server().scheduler
    }

    /// The server's delivery engine.
    pub fn engine(&self) -> &DeliveryEngine {
        &self.server().engine
    }

    /// The bus the server delivers live events from (publishing on it reaches its sockets).
    pub fn events(&self) -> &EventBus {
        &self.server().events
    }

    /// What queues the server's sends.
    #[allow(dead_code)] // the api suite's (the drills include this harness too)
    pub fn messaging(&self) -> &Messaging {
        &self.server().messaging
    }

    /// The operations port's metrics, as Prometheus would scrape them.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.ops_url("/metrics")).await.expect("metrics").text().await.expect("text")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A URL on the operations port (`/metrics`).
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server().ops_addr)
    }

    /// Sends every message due now through the server's delivery engine, until none is due, and
    /// says what it did. Retries are due after their delay: call again past it.
    pub async fn deliver_all(&self) -> Drained {
        self.server().engine.run_until_idle().await.expect("delivery")
    }

    /// Waits until the account emails the server is preparing or sending are done.
    pub async fn account_mail_settled(&self) {
        let accounts = &self.server().accounts;
        tokio::time::timeout(Duration::from_secs(30), accounts.mail_idle()).await.expect("account mail settles");
    }

    /// POSTs JSON the way the web app does: same Origin, and the CSRF token once logged in.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).header("Origin", self.origin()).json(body);
        if let Some(csrf) = &self.csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request.send().await.expect("request")
    }

    /// POSTs a CSV file to `/api/v1/contacts/import{query}` with the session's CSRF token.
    pub async fn import_csv(&self, query: &str, csv: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/v1/contacts/import{query}")))
            .header("Content-Type", "text/csv")
            .header("X-CSRF-Token", self.csrf.clone().unwrap_or_default())
            .body(csv)
            .send()
            .await
            .expect("request")
    }

    /// POSTs a form the way a browser does (same Origin; the form carries its own CSRF field).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.url(path)).header("Origin", self.origin()).form(form).send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn register(&self, email: &str, name: &str) -> reqwest::Response {
        self.post_json("/api/v1/auth/register", &json!({ "email": email, "display_name": name, "password": PASSWORD }))
            .await
    }

    /// Logs the client in with the JSON API and remembers the CSRF token and the session cookie.
    pub async fn login(&mut self, email: &str, password: &str) -> reqwest::Response {
        let response = self.post_json("/api/v1/auth/login", &json!({ "email": email, "password": password })).await;
        if response.status().is_success() {
            let headers = response.headers().clone();
            self.session_cookie = headers
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(str::to_owned);
            let body: Value = response.json().await.expect("json");
            self.csrf = body["csrf_token"].as_str().map(str::to_owned);
            return rebuild(200, headers, body);
        }
        response
    }

    /// A verified account created directly, as `borcelle admin create-user` does.
    pub async fn verified_user(&self, email: &str, role: Role) {
        borcelle_engine::accounts::create_verified_user(&self.db, email, "Test User", PASSWORD.to_owned(), role)
            .await
            .expect("user");
    }

    /// Registers, verifies via the outbox link and logs in: a ready user.
    pub async fn signed_in_user(&mut self, email: &str) {
        self.verified_user(email, Role::User).await;
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), 200, "login of {email}");
    }

    /// The outbox messages to an address (newest first) once the server's account emails are
    /// done, asserting that there are at least `count`.
    pub async fn outbox_for(&self, email: &str, count: usize) -> Vec<Value> {
        self.account_mail_settled().await;
        let rows: Vec<Value> = borcelle_store::outbox::list(&self.db, Some(email), 50)
            .await
            .expect("outbox")
            .into_iter()
            .map(|m| serde_json::to_value(m).expect("json"))
            .collect();
        assert!(rows.len() >= count, "{} outbox messages to {email}, expected at least {count}", rows.len());
        rows
    }

    /// The token in the newest link of `path` (`/verify`, `/reset`) mailed to an address.
    pub async fn mailed_token(&self, email: &str, path: &str, nth_message: usize) -> String {
        let messages = self.outbox_for(email, nth_message).await;
        let text = messages[0]["text_body"].as_str().expect("text body");
        token_from_text(text, &self.url(path))
    }
}

/// Finds `<prefix>?token=…` in a text and returns the token.
pub fn token_from_text(text: &str, prefix: &str) -> String {
    let link = text
        .split_whitespace()
        .find(|word| word.starts_with(prefix))
        .unwrap_or_else(|| panic!("no link starting with {prefix} in:\n{text}"));
    let url = Url::parse(link).expect("link is a URL");
    url.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()).expect("token parameter")
}

/// Re-creates a response from parts already read (for helpers that peek at a body).
fn rebuild(status: u16, headers: HeaderMap, body: Value) -> reqwest::Response {
    let mut builder = axum::http::Response::builder().status(status);
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    reqwest::Response::from(builder.body(body.to_string()).expect("response"))
}

/// Reads an error body and returns `(code, field)`.
pub async fn error_of(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_else(|err| panic!("error body of a {status} is not JSON: {err}"));
    let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {body}")).to_owned();
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "no message in {body}");
    (status, code, body["error"]["field"].as_str().map(str::to_owned))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}
