//! Postfix's own test programs as the other end of the wire: `smtp-sink` (accepts and discards
//! every message, offers PIPELINING, counts what it accepted) and `smtp-source` (sends as fast as
//! the wire and the sink take it: the ceiling Borcelle's rate is measured against).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::process::{Child, Command};

/// Where Debian's `postfix` package puts the programs.
const SBIN: &str = "/usr/sbin";
/// A message of `smtp-source`: about the size of Borcelle's (2 KB).
pub const SOURCE_MESSAGE_BYTES: usize = 2048;

fn program(name: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(SBIN).join(name);
    ensure!(path.exists(), "{} is missing: scripts/bench installs Debian's postfix package", path.display());
    Ok(path)
}

/// A running `smtp-sink` with its running count (`-c`) going to a file.
pub struct PostfixSink {
    child: Child,
    pub port: u16,
    counter: PathBuf,
}

impl PostfixSink {
    pub async fn start(port: u16) -> anyhow::Result<PostfixSink> {
        let counter = std::env::temp_dir().join(format!("borcelle-bench-smtp-sink-{}-{port}.out", std::process::id()));
        let out = std::fs::File::create(&counter).with_context(|| format!("creating {}", counter.display()))?;
        let mut command = Command::new(program("smtp-sink")?);
        command.arg("-c");
        // Run as root it must be told whose privileges to take once its socket is open.
        if is_root().await {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting smtp-sink")?;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(PostfixSink { child, port, counter });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("smtp-sink did not listen on {port} within 5 s")
    }

    /// Messages accepted so far (its counter's last `mesg=`).
    pub fn accepted(&self) -> anyhow::Result<u64> {
        let text = std::fs::read(&self.counter).with_context(|| format!("reading {}", self.counter.display()))?;
        let text = String::from_utf8_lossy(&text);
        let Some(at) = text.rfind("mesg=") else { return Ok(0) };
        let digits: String = text[at + 5..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().with_context(|| format!("smtp-sink's counter reads {:?}", &text[at..]))
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(&self.counter);
    }
}

async fn is_root() -> bool {
    let id = Command::new("id").arg("-u").output().await;
    id.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// One `smtp-source` run: `messages` of [`SOURCE_MESSAGE_BYTES`] over `sessions` connections kept
/// open (`-d`), into the sink.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    pub messages: u64,
    pub elapsed: Duration,
    pub sessions: usize,
}

impl Ceiling {
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Measures the wire's ceiling into `sink`, and checks the sink counted every message.
pub async fn ceiling(sink: &PostfixSink, messages: u64, sessions: usize) -> anyhow::Result<Ceiling> {
    let before = sink.accepted()?;
    let started = Instant::now();
    let status = Command::new(program("smtp-source")?)
        .args(["-d", "-s", &sessions.to_string(), "-m", &messages.to_string()])
        .args(["-l", &SOURCE_MESSAGE_BYTES.to_string()])
        .args(["-f", "source@bench.example", "-t", "sink@bench.example"])
        .arg(format!("127.0.0.1:{}", sink.port))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .context("running smtp-source")?;
    let elapsed = started.elapsed();
    ensure!(status.success(), "smtp-source exited with {status}");
    // The counter is written as sessions end; give the last one a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counted = sink.accepted()? - before;
    ensure!(counted == messages, "smtp-sink counted {counted} of smtp-source's {messages} messages");
    Ok(Ceiling { messages, elapsed, sessions })
}
