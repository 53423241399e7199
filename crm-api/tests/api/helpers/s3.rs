//! A real S3 server for the tests (s3s-fs, which checks request signatures).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use borcelle::config::{S3Credentials, S3Settings};
use secrecy::SecretString;
use url::Url;

use super::{free_port, unique};

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
