//! Real SMTP servers for the tests: mailtutan (STARTTLS, AUTH, mail read back over HTTP) and
//! aiosmtpd writing into a Maildir (bulk).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use borcelle::config::{SmtpSettings, SmtpTls};
use serde_json::Value;

use super::{free_port, unique};

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

impl SmtpSink {
    /// Starts `refusing_smtp.py` (aiosmtpd): it refuses `refuse…@` recipients with 550 5.1.1 every
    /// time and `greylist…@` recipients with 451 4.7.1 the first time, and stores the rest in `dir`.
    pub async fn start_refusing(port: u16, dir: &std::path::Path) -> SmtpSink {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/helpers/refusing_smtp.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {script} ({err}); `scripts/test` installs aiosmtpd"));
        let sink = SmtpSink { child, port, dir: dir.to_owned() };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return sink;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{script} did not start on port {port}");
    }
}
