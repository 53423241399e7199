//! Test harness: each test gets its own PostgreSQL database and its own server on a random port,
//! and, where mail must really travel, its own SMTP server process (mailtutan); where files must
//! really be stored, its own S3 server process (s3s-fs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use borcelle::config::{
    AuthSettings, DatabaseSettings, DeliverySettings, HttpSettings, MailSettings, S3Credentials, S3Settings, Settings,
    SmtpSettings, SmtpTls, StorageBackend, StorageSettings, TransportSettings,
};
use borcelle::startup::Application;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
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
        },
        dev_mode: true,
        delivery: DeliverySettings {
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            ..DeliverySettings::default()
        },
        redis_url: None,
        storage: StorageSettings::local(std::env::temp_dir().join(unique("borcelle-files-"))),
    }
}

/// A running server with its own database, and a browser-like client (cookies, no redirects).
pub struct TestApp {
    pub addr: SocketAddr,
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
    let db = borcelle::db::connect_and_migrate(&settings.database).await.expect("database");
    let app = Application::with_listener(settings, db.clone(), listener).await.expect("app");
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp { addr, db, db_name, client: browser_client(), csrf: None, session_cookie: None, files_dir }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// POSTs JSON the way the web app does: same Origin, and the CSRF token once logged in.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).header("Origin", self.origin()).json(body);
        if let Some(csrf) = &self.csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request.send().await.expect("request")
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
    pub async fn verified_user(&self, email: &str, role: borcelle::db::users::Role) {
        borcelle::auth::create_verified_user(&self.db, email, "Test User", PASSWORD.to_owned(), role)
            .await
            .expect("user");
    }

    /// Registers, verifies via the outbox link and logs in: a ready user.
    pub async fn signed_in_user(&mut self, email: &str) {
        self.verified_user(email, borcelle::db::users::Role::User).await;
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), 200, "login of {email}");
    }

    /// The outbox messages to an address, waiting (up to 10 s) until there are at least `count`.
    pub async fn outbox_for(&self, email: &str, count: usize) -> Vec<Value> {
        for _ in 0..100 {
            let rows: Vec<Value> = borcelle::db::outbox::list(&self.db, Some(email), 50)
                .await
                .expect("outbox")
                .into_iter()
                .map(|m| serde_json::to_value(m).expect("json"))
                .collect();
            if rows.len() >= count {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("fewer than {count} outbox messages to {email} after 10 s");
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

/// A real SMTP server process (mailtutan) with its HTTP API for reading mail back. Send it one
/// message per SMTP connection (see [`SmtpSink`] for bulk).
pub struct MailServer {
    child: Child,
    pub smtp_port: u16,
    http_port: u16,
    http: reqwest::Client,
    /// With TLS: the directory holding the CA, the server certificate and its key.
    tls_dir: Option<PathBuf>,
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn mailtutan_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MAILTUTAN_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    let installed = home.join("bin").join("mailtutan");
    if installed.exists() { installed } else { PathBuf::from("mailtutan") }
}

/// Writes a test CA (`ca.pem`) and a certificate for 127.0.0.1/localhost signed by it
/// (`cert.pem`, `key.pem`) into a fresh directory.
fn write_test_pki() -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(unique("borcelle-pki-"));
    std::fs::create_dir_all(&dir).expect("pki dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &ca).expect("certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    dir
}

impl MailServer {
    /// Plain SMTP on a free port.
    pub async fn start() -> MailServer {
        Self::launch(free_port(), None, false).await
    }

    /// Plain SMTP on a given port (to bring a server up where the app already points).
    pub async fn start_on(smtp_port: u16) -> MailServer {
        Self::launch(smtp_port, None, false).await
    }

    /// SMTP that offers STARTTLS with a certificate from a test CA and demands AUTH.
    pub async fn start_tls_with_auth(user: &str, password: &str) -> MailServer {
        Self::launch(free_port(), Some((user, password)), true).await
    }

    async fn launch(smtp_port: u16, auth: Option<(&str, &str)>, tls: bool) -> MailServer {
        let http_port = free_port();
        let mut command = Command::new(mailtutan_binary());
        command
            .args(["--ip", "127.0.0.1", "--smtp-port", &smtp_port.to_string(), "--http-port", &http_port.to_string()])
            .args(["--messages-limit", "100000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let tls_dir = tls.then(write_test_pki);
        if let Some(dir) = &tls_dir {
            command.arg("--smtp-cert-path").arg(dir.join("cert.pem")).arg("--smtp-key-path").arg(dir.join("key.pem"));
        }
        if let Some((user, password)) = auth {
            command.args(["--smtp-auth-username", user, "--smtp-auth-password", password]);
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "cannot start mailtutan ({err}); `.ci/run` installs it with `cargo install --locked mailtutan@0.3.0`"
            )
        });
        let server = MailServer { child, smtp_port, http_port, http: reqwest::Client::new(), tls_dir };
        for _ in 0..100 {
            let up = server.http.get(server.api("/api/messages")).send().await.is_ok();
            if up && tokio::net::TcpStream::connect(("127.0.0.1", smtp_port)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mailtutan did not start on ports {smtp_port}/{http_port}");
    }

    /// The test CA that signed this server's certificate.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls_dir.as_ref().map(|dir| dir.join("ca.pem"))
    }

    fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn smtp_settings(&self) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: self.smtp_port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            pool_size: 2,
            timeout: Duration::from_secs(10),
            ca_file: self.ca_file(),
        }
    }

    /// Every message the server holds.
    pub async fn messages(&self) -> Vec<Value> {
        self.http.get(self.api("/api/messages")).send().await.expect("mailtutan").json().await.expect("json")
    }

    pub async fn part(&self, id: u64, part: &str) -> String {
        self.http
            .get(self.api(&format!("/api/messages/{id}/{part}")))
            .send()
            .await
            .expect("mailtutan")
            .text()
            .await
            .expect("text")
    }

    /// Waits (up to 10 s) for a message to `email` and returns its id.
    pub async fn wait_for(&self, email: &str) -> u64 {
        for _ in 0..100 {
            for message in self.messages().await {
                let to = message["recipients"].to_string();
                if to.contains(email) {
                    return message["id"].as_u64().expect("id");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no message to {email} reached the SMTP server within 10 s");
    }
}

/// The recipients (`To:` addresses) and Message-IDs of every message file in a maildir.
pub fn maildir_messages(dir: &std::path::Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let header = |name: &str| {
            text.lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let to = header("To:");
        let address = to.rsplit_once('<').map_or(to.as_str(), |(_, a)| a.trim_end_matches('>')).to_owned();
        out.push((address, header("Message-ID:")));
    }
    out
}

/// Inserts `count` contacts for a user directly (test setup), emails `prefix{i}@example.com`.
pub async fn seed_contacts(db: &PgPool, owner_email: &str, prefix: &str, count: i32, tag: &str) -> Vec<uuid::Uuid> {
    sqlx::query_scalar(
        "INSERT INTO contacts (id, owner_id, name, email, tags)
         SELECT gen_random_uuid(), u.id, 'Contact ' || i, $2 || i || '@example.com', ARRAY[$4]
         FROM users u, generate_series(1, $3) i WHERE u.email = $1
         RETURNING id",
    )
    .bind(owner_email)
    .bind(prefix)
    .bind(count)
    .bind(tag)
    .fetch_all(db)
    .await
    .expect("seed contacts")
}

/// A WebSocket to `/ws` with the client's session cookie, as a browser tab opens it.
pub async fn open_socket(
    app: &TestApp,
    session_cookie: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws", app.addr).into_client_request().expect("request");
    request.headers_mut().insert("Cookie", session_cookie.parse().expect("cookie"));
    request.headers_mut().insert("Origin", app.origin().parse().expect("origin"));
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket handshake");
    socket
}

/// Reads the next JSON message from a WebSocket (up to 30 s).
pub async fn next_event(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Option<Value> {
    use futures::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next()).await.ok()??.ok()?;
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).ok();
        }
    }
}

/// A real SMTP server process (Python's aiosmtpd) that writes every message into a Maildir.
///
/// Bulk tests use it: mailtutan 0.3.0 records the first message of an SMTP connection again for
/// every later message on that connection, and a pooled client sends many per connection.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    /// Starts the sink on `port`, storing into `dir` (which survives restarts of the sink).
    pub async fn start(port: u16, dir: &std::path::Path) -> SmtpSink {
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start aiosmtpd ({err}); `scripts/test` installs it with pip"));
        let sink = SmtpSink { child, port, dir: dir.to_owned() };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return sink;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aiosmtpd did not start on port {port}");
    }

    pub fn smtp_settings(&self) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            pool_size: 4,
            timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }

    /// `(recipient address, Message-ID)` of every message stored so far.
    pub fn messages(&self) -> Vec<(String, String)> {
        maildir_messages(&self.dir.join("new"))
    }

    /// The raw bytes of every message stored so far (for MIME parsing).
    pub fn raw_messages(&self) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("new")) else { return Vec::new() };
        entries.flatten().filter_map(|entry| std::fs::read(entry.path()).ok()).collect()
    }

    /// Waits (up to `secs`) until at least `count` messages are stored.
    pub async fn wait_for_count(&self, count: usize, secs: u64) -> Vec<(String, String)> {
        let mut messages = self.messages();
        for _ in 0..secs * 20 {
            if messages.len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            messages = self.messages();
        }
        messages
    }
}

/// A real S3 server process (s3s-fs, which checks request signatures) on a free port, storing
/// into a fresh directory, with one bucket created through the S3 API.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub bucket: String,
}

const S3_ACCESS_KEY: &str = "borcelle-test-access-key";
const S3_SECRET_KEY: &str = "borcelle-test-secret-key-0123456789";

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn s3s_fs_binary() -> PathBuf {
    if let Ok(path) = std::env::var("S3S_FS_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    let installed = home.join("bin").join("s3s-fs");
    if installed.exists() { installed } else { PathBuf::from("s3s-fs") }
}

impl S3Server {
    pub async fn start() -> S3Server {
        let dir = std::env::temp_dir().join(unique("borcelle-s3-"));
        std::fs::create_dir_all(&dir).expect("s3 dir");
        let port = free_port();
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start s3s-fs ({err}); `scripts/test` installs it with `cargo install --locked s3s-fs@0.14.1 --features binary`"
                )
            });
        let server = S3Server { child, port, dir, bucket: "borcelle-test".to_owned() };
        let mut up = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "s3s-fs did not start on port {port}");
        server.client().create_bucket().bucket(&server.bucket).send().await.expect("create the test bucket");
        server
    }

    /// Settings that point the server under test at this bucket.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(Url::parse(&format!("http://127.0.0.1:{}", self.port)).expect("url")),
            region: "us-east-1".to_owned(),
            bucket: self.bucket.clone(),
            path_style: true,
            credentials: Some(S3Credentials {
                access_key_id: SecretString::from(S3_ACCESS_KEY.to_owned()),
                secret_access_key: SecretString::from(S3_SECRET_KEY.to_owned()),
            }),
        }
    }

    /// A client of the test's own, to look into the bucket independently of the code under test.
    pub fn client(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        use aws_smithy_http_client::tls;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .force_path_style(true)
            .http_client(http)
            .credentials_provider(Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test"))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// The object's bytes, read back through the S3 API; None when there is no such object.
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let output = self.client().get_object().bucket(&self.bucket).key(key).send().await.ok()?;
        Some(output.body.collect().await.expect("object body").into_bytes().to_vec())
    }

    /// Every key in the bucket.
    pub async fn keys(&self) -> Vec<String> {
        let listed = self.client().list_objects_v2().bucket(&self.bucket).send().await.expect("list objects");
        listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    }
}

/// A child process, killed when dropped (a test's `serve` or `worker`).
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The URL of the test server's own database, for a child process.
pub fn database_url(app: &TestApp) -> String {
    format!("{}/{}", server_url(), app.db_name)
}

/// Waits (up to 15 s) until `base`/readyz answers 200.
pub async fn wait_ready(base: &str) {
    for _ in 0..300 {
        if let Ok(response) = reqwest::get(format!("{base}/readyz")).await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become ready");
}

/// Another browser on a test server (its own cookies), for a second user.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    pub csrf: Option<String>,
    /// `name=value` of the session cookie, once logged in (for WebSocket handshakes).
    pub session_cookie: Option<String>,
}

impl Browser {
    pub fn of(app: &TestApp) -> Browser {
        Browser { base: app.url(""), client: browser_client(), csrf: None, session_cookie: None }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a verified user for `email` on `app` and logs a new browser in as it.
    pub async fn signed_in_user(app: &TestApp, email: &str) -> Browser {
        app.verified_user(email, borcelle::db::users::Role::User).await;
        let mut browser = Browser::of(app);
        browser.login(email).await;
        browser
    }

    /// Logs in with the JSON API (asserting success) and keeps the CSRF token and session cookie.
    pub async fn login(&mut self, email: &str) {
        let response = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .header("Origin", &self.base)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "login of {email}");
        self.session_cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let body: Value = response.json().await.expect("json");
        self.csrf = body["csrf_token"].as_str().map(str::to_owned);
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.expect("json")
    }

    /// A state-changing call the way the web app makes it (same Origin, CSRF header); the status.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
        let mut request = self
            .client
            .request(method, self.url(path))
            .header("Origin", &self.base)
            .header("X-CSRF-Token", self.csrf.clone().unwrap_or_default());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request").status().as_u16()
    }
}

/// Creates a contact for the signed-in user and queues one message to it; the task id.
pub async fn message_one_new_contact(app: &TestApp) -> String {
    let contact: Value = app
        .post_json("/api/v1/contacts", &json!({ "name": "Ada", "email": "ada@example.com" }))
        .await
        .json()
        .await
        .expect("contact");
    let response = app
        .post_json("/api/v1/messages", &json!({ "contact_ids": [contact["id"]], "subject": "Hi", "body": "Hello" }))
        .await;
    assert_eq!(response.status(), 202, "queueing the message");
    let queued: Value = response.json().await.expect("json");
    queued["task_id"].as_str().expect("task id").to_owned()
}
