//! The `borcelle` binary as a child process of a test.

use std::time::Duration;

use super::{TestApp, server_url};

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
