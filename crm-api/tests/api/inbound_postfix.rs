//! A bounce written by a real MTA: Borcelle sends through a real Postfix 3.7 (its own instance, in
//! a temporary directory, never the machine's mail system), Postfix finds no such mailbox and
//! writes the delivery status notification itself, sends it to the message's VERP address, and
//! Borcelle's receiver files it: the ledger row bounced with Postfix's words, the address
//! suppressed, the bounce in the contact's conversation.
//!
//! Postfix is installed by `scripts/test`; without it this test fails, unless
//! `BORCELLE_SKIP_POSTFIX=1` says to skip it.

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use borcelle::config::{SmtpSettings, SmtpTls, TransportSettings};
use borcelle_engine::inbound::{Addresses, InboundSettings, Kind};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, free_port, spawn_app_with, unique};

/// Borcelle's inbound domain: the reply, bounce and unsubscribe addresses.
const DOMAIN: &str = "in.borcelle.test";
/// The contact's domain, of which the test's Postfix is the final destination (with no mailboxes).
const CONTACT: &str = "nobody@example.net";
/// The name the test's Postfix gives itself (in its greeting, its `Received:` lines and its DSNs).
const POSTFIX_HOSTNAME: &str = "mta.postfix-test.invalid";
const POSTFIX: &str = "/usr/sbin/postfix";
const POSTQUEUE: &str = "/usr/sbin/postqueue";

/// Whether to run: Postfix must be installed (`scripts/test` installs it) and the test must run as
/// root (Postfix's master starts as root); `BORCELLE_SKIP_POSTFIX=1` skips the test instead.
fn postfix_wanted() -> bool {
    if std::env::var("BORCELLE_SKIP_POSTFIX").is_ok_and(|v| v == "1") {
        eprintln!("BORCELLE_SKIP_POSTFIX=1: the test through a real Postfix is skipped");
        return false;
    }
    assert!(
        Path::new(POSTFIX).exists(),
        "Postfix is not installed ({POSTFIX} is missing): run scripts/test, which installs it \
         (apt-get install postfix, without starting the machine's mail system), \
         or set BORCELLE_SKIP_POSTFIX=1 to skip this test"
    );
    // /proc/self belongs to the process's effective user.
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    assert_eq!(euid, 0, "Postfix starts only as root: run the tests as root, or set BORCELLE_SKIP_POSTFIX=1");
    true
}

/// A Postfix instance of the test's own: configuration, queue, data and log under one temporary
/// directory, an SMTP server on a port of its own. Dropping it stops Postfix and removes the
/// directory (on failure too, after printing Postfix's log).
struct Postfix {
    dir: PathBuf,
    smtpd_port: u16,
    started: bool,
}

impl Postfix {
    /// Starts Postfix with its SMTP server on `127.0.0.1:smtpd_port`: mail for `example.net` is
    /// accepted and then bounced (no such mailbox), mail for [`DOMAIN`] is relayed to `receiver`,
    /// anything else is refused.
    fn start(smtpd_port: u16, receiver: SocketAddr) -> Postfix {
        let dir = std::env::temp_dir().join(unique("borcelle-pfx-"));
        // The guard exists before anything is written, so that a failure from here on cleans up.
        let mut postfix = Postfix { dir, smtpd_port, started: false };
        let dir = postfix.dir.clone();
        for sub in ["etc", "queue", "data", "log", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).expect("the Postfix directories");
        }
        // Postfix's processes (user postfix) go through it, whatever the umask.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let chown = Command::new("chown").arg("postfix").arg(dir.join("data")).status().expect("chown");
        assert!(chown.success(), "chown postfix {}", dir.join("data").display());

        let d = dir.display();
        let main_cf = format!(
            "# A Postfix of Borcelle's test only, not the machine's mail system.\n\
             compatibility_level = 3.6\n\
             queue_directory = {d}/queue\n\
             data_directory = {d}/data\n\
             maillog_file = {d}/log/postfix.log\n\
             maillog_file_prefixes = {d}/log\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             myhostname = {POSTFIX_HOSTNAME}\n\
             mydestination =\n\
             alias_maps =\n\
             alias_database =\n\
             biff = no\n\
             smtpd_peername_lookup = no\n\
             smtp_dns_support_level = disabled\n\
             # example.net ends here and has no mailbox: smtpd accepts the recipient, then the\n\
             # virtual delivery agent finds no such user and Postfix bounces the message (a DSN).\n\
             virtual_mailbox_domains = example.net\n\
             virtual_mailbox_maps = texthash:{d}/etc/mailboxes\n\
             virtual_mailbox_base = {d}/mail\n\
             smtpd_reject_unlisted_recipient = no\n\
             # Borcelle's domain goes to its receiver; nothing goes anywhere else.\n\
             transport_maps = texthash:{d}/etc/transport\n\
             default_transport = error:5.7.1 this test's Postfix sends mail nowhere else\n\
             # A deferred delivery is tried again soon.\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n"
        );
        let master_cf = format!(
            "127.0.0.1:{smtpd_port} inet n - n - - smtpd\n\
             pickup     unix  n - n 60    1 pickup\n\
             cleanup    unix  n - n -     0 cleanup\n\
             qmgr       unix  n - n 300   1 qmgr\n\
             rewrite    unix  - - n -     - trivial-rewrite\n\
             bounce     unix  - - n -     0 bounce\n\
             defer      unix  - - n -     0 bounce\n\
             trace      unix  - - n -     0 bounce\n\
             verify     unix  - - n -     1 verify\n\
             flush      unix  n - n 1000? 0 flush\n\
             proxymap   unix  - - n -     - proxymap\n\
             proxywrite unix  - - n -     1 proxymap\n\
             showq      unix  n - n -     - showq\n\
             smtp       unix  - - n -     - smtp\n\
             relay      unix  - - n -     - smtp\n\
             error      unix  - - n -     - error\n\
             retry      unix  - - n -     - error\n\
             discard    unix  - - n -     - discard\n\
             virtual    unix  - n n -     - virtual\n\
             anvil      unix  - - n -     1 anvil\n\
             scache     unix  - - n -     1 scache\n\
             postlog    unix-dgram n - n - 1 postlogd\n"
        );
        let receiver = format!("{DOMAIN} smtp:[{}]:{}\n", receiver.ip(), receiver.port());
        for (name, text) in [
            ("main.cf", main_cf.as_str()),
            ("master.cf", master_cf.as_str()),
            ("transport", receiver.as_str()),
            // Somebody else has a mailbox; nobody@example.net does not.
            ("mailboxes", "somebody@example.net somebody/\n"),
        ] {
            std::fs::write(dir.join("etc").join(name), text).expect("the Postfix configuration");
        }

        // Run as root, the Postfix commands take `-c` to any directory: the machine's own
        // /etc/postfix/main.cf need not list it in alternate_config_directories (Postfix asks that
        // of other users only), so nothing of the machine's configuration is touched.
        let (ok, output) = postfix.run(POSTFIX, &["check"]);
        assert!(ok, "postfix check refused the test's configuration:\n{output}\n{}", postfix.log());
        postfix.started = true;
        let (ok, output) = postfix.run(POSTFIX, &["start"]);
        assert!(ok, "postfix start failed:\n{output}\n{}", postfix.log());
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", smtpd_port)).is_err() {
            assert!(Instant::now() < deadline, "Postfix's smtpd is not up on port {smtpd_port}:\n{}", postfix.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        postfix
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// Runs a Postfix command on this instance (`-c` its configuration directory); says whether it
    /// succeeded, and what it printed. Its output goes to a file, not a pipe: a daemon it starts
    /// must not keep the test waiting for the end of a pipe.
    fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let out = self.dir.join(format!("{}.out", unique("command-")));
        let file = std::fs::File::create(&out).expect("command output file");
        let status = Command::new(program)
            .arg("-c")
            .arg(self.config_dir())
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .status()
            .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
        let output = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        (status.success(), format!("{program} {}: {status}\n{output}", args.join(" ")))
    }

    /// Asks Postfix to deliver its queue now (a deferred message is otherwise retried later).
    fn flush(&self) {
        let _ = self.run(POSTQUEUE, &["-f"]);
    }

    /// The first line of Postfix's log that `wanted` matches, waiting up to 30 s for it.
    async fn log_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(self.dir.join("log/postfix.log")).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| wanted(l)) {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "the line expected is not in Postfix's log after 30 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Postfix's log so far.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log/postfix.log")).unwrap_or_default();
        format!("--- Postfix's log ---\n{log}--- end of Postfix's log ---")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
        if self.started {
            let (stopped, output) = self.run(POSTFIX, &["stop"]);
            if !stopped && self.dir.join("queue/pid/master.pid").exists() {
                eprintln!("{output}");
                let _ = self.run(POSTFIX, &["abort"]);
            }
        }
        // A process on its way out may still write a file: try a few times.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {} (Postfix on port {})", self.dir.display(), self.smtpd_port);
    }
}

/// An inbound row: its id, ledger row, kind, envelope sender, DSN status and raw message's key.
type Filed = (Uuid, Option<Uuid>, String, String, Option<String>, String);

async fn conversation(app: &TestApp, contact: &str) -> Vec<Value> {
    let page: Value = app.get(&format!("/api/v1/contacts/{contact}/conversation")).await.json().await.unwrap();
    page["entries"].as_array().cloned().unwrap_or_default()
}

async fn ledger(app: &TestApp, row: Uuid) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, last_error FROM messages WHERE id = $1").bind(row).fetch_one(&app.db).await.unwrap()
}

#[tokio::test]
async fn postfix_bounces_an_unknown_mailbox_to_the_verp_address_and_the_message_is_marked_bounced() {
    if !postfix_wanted() {
        return;
    }
    let smtpd_port = free_port();
    let mut app = spawn_app_with(|settings| {
        settings.mail.transport = TransportSettings::Smtp(SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: smtpd_port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            pool_size: 1,
            timeout: Duration::from_secs(30),
            ca_file: None,
        });
        settings.inbound = Some(InboundSettings::new(DOMAIN, SocketAddr::from(([127, 0, 0, 1], 0))));
    })
    .await;
    let receiver = app.inbound_addr.expect("the receiver runs in serve");
    let postfix = Postfix::start(smtpd_port, receiver);

    // The owner writes to a contact whose mailbox does not exist.
    app.signed_in_user("owner@example.com").await;
    let contact: Value =
        app.post_json("/api/v1/contacts", &json!({ "name": "No Body", "email": CONTACT })).await.json().await.unwrap();
    let contact = contact["id"].as_str().expect("the contact's id").to_owned();
    let response = app
        .post_json(
            "/api/v1/messages",
            &json!({ "contact_ids": [contact], "subject": "Quarterly update", "body": "The numbers are in." }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let drained = app.deliver_all().await;
    assert_eq!(drained.sent, 1, "Postfix accepted the message: {drained:?}\n{}", postfix.log());
    let (row,): (Uuid,) = sqlx::query_as("SELECT id FROM messages WHERE contact_id = $1::uuid")
        .bind(&contact)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let bounce_address = Addresses::load(&app.db, DOMAIN).await.unwrap().address(Kind::Bounce, row);

    // Postfix bounces it, relays its report to the receiver, and the receiver files it.
    let started = Instant::now();
    let mut next_flush = started + Duration::from_secs(3);
    let (status, error) = loop {
        let (status, error) = ledger(&app, row).await;
        if status == "bounced" {
            break (status, error);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the message is still {status} ({error:?}) after 60 s: no bounce was filed\n{}",
            postfix.log()
        );
        if Instant::now() >= next_flush {
            postfix.flush();
            next_flush = Instant::now() + Duration::from_secs(3);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("bounced {:.1} s after Postfix accepted the message", started.elapsed().as_secs_f64());
    assert_eq!(status, "bounced");
    // Postfix's own words: the status and the virtual delivery agent's diagnostic.
    assert_eq!(error.as_deref(), Some(r#"bounced (5.1.1): unknown user: "nobody@example.net""#), "{}", postfix.log());

    // Postfix had the message from the VERP envelope sender and sent its report back there (it
    // logs that once the receiver answered, which is just after the row was marked).
    let relayed = postfix
        .log_line(|l| l.contains(&format!("to=<{bounce_address}>")) && l.contains(&format!(":{}", receiver.port())))
        .await;
    let log = postfix.log();
    assert!(log.contains(&format!("from=<{bounce_address}>")), "the envelope sender is {bounce_address}:\n{log}");
    assert!(log.contains("status=bounced (unknown user"), "{log}");

    // Filed once, under the ledger row the token names, as a bounce from the null sender.
    let filed: Vec<Filed> = sqlx::query_as(
        "SELECT id, ledger_id, kind, envelope_from, dsn_status, raw_key FROM inbound_messages WHERE contact_id = $1::uuid",
    )
    .bind(&contact)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(filed.len(), 1, "{filed:?}");
    let (inbound_id, ledger_id, kind, envelope_from, dsn_status, raw_key) = filed[0].clone();
    assert_eq!(ledger_id, Some(row));
    assert_eq!(kind, "bounce");
    assert_eq!(envelope_from, "", "a delivery report comes from the null sender");
    assert_eq!(dsn_status.as_deref(), Some("5.1.1"));
    assert!(
        relayed.contains(&format!("status=sent (250 2.0.0 Ok: filed as {inbound_id})")),
        "the receiver took Postfix's report and filed it as {inbound_id}: {relayed}"
    );
    // The report as kept: Postfix's multipart/report, addressed to the VERP address.
    let raw = std::fs::read(app.files_dir.as_ref().expect("local storage").join(&raw_key)).expect("the raw report");
    let report = MessageParser::default().parse(&raw).expect("a MIME message");
    let content_type = report.content_type().expect("a Content-Type");
    assert_eq!(
        (content_type.ctype(), content_type.subtype(), content_type.attribute("report-type")),
        ("multipart", Some("report"), Some("delivery-status"))
    );
    let to = report.to().and_then(|to| to.first()).and_then(|to| to.address()).unwrap_or_default();
    assert_eq!(to, bounce_address);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains(&format!("Reporting-MTA: dns; {POSTFIX_HOSTNAME}")), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; nobody@example.net"), "{text}");

    // A hard bounce: the address is suppressed.
    let suppression = app.get(&format!("/api/v1/suppressions/{CONTACT}")).await;
    assert_eq!(suppression.status(), 200, "a hard bounce suppresses the address");

    // The owner sees the bounce in the contact's conversation, above the message it reports on.
    let entries = conversation(&app, &contact).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["direction"], "inbound");
    assert_eq!(entries[0]["state"], "bounce");
    assert_eq!(entries[0]["id"], inbound_id.to_string());
    assert_eq!(entries[0]["in_reply_to"], row.to_string(), "the report is about the message sent");
    assert_eq!(entries[0]["subject"], "Undelivered Mail Returned to Sender");
    assert_eq!(entries[1]["direction"], "outbound");
    assert_eq!(entries[1]["state"], "bounced");
    drop(postfix);
}
