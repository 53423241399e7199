//! Objects in an S3-compatible bucket (AWS S3, MinIO) through aws-sdk-s3. A PUT is atomic in S3:
//! an interrupted upload leaves no object.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_smithy_http_client::tls;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use secrecy::ExposeSecret;

use super::{ByteStream, ObjectStore, StoreError, check_key};
use crate::settings::S3Settings;

pub struct S3Store {
    client: Client,
    bucket: String,
}

fn backend(action: &str, key: &str, err: impl std::error::Error) -> StoreError {
    StoreError::Backend(format!("{action} {key}: {}", DisplayErrorContext(err)))
}

impl S3Store {
    /// A client for the bucket. With static credentials nothing is read from the environment;
    /// without them, the AWS default chain finds them (web identity, container or instance role, …).
    pub async fn new(settings: &S3Settings) -> Result<Self, crate::SetupError> {
        // rustls on ring, the crypto provider the rest of the server uses.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let region = Region::new(settings.region.clone());
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .http_client(http.clone())
            .force_path_style(settings.path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            )
            // Checksums only where S3 demands them: many S3-compatible servers reject the newer
            // default ones, and attachments carry their own SHA-256, checked before sending.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        builder = match &settings.credentials {
            Some(credentials) => builder.credentials_provider(Credentials::new(
                credentials.access_key_id.expose_secret(),
                credentials.secret_access_key.expose_secret(),
                None,
                None,
                "borcelle-settings",
            )),
            None => {
                let shared =
                    aws_config::defaults(BehaviorVersion::latest()).region(region).http_client(http).load().await;
                let provider = shared.credentials_provider().ok_or_else(|| {
                    crate::SetupError::new(
                        "S3",
                        "no credentials: set BORCELLE_S3_ACCESS_KEY_ID and BORCELLE_S3_SECRET_ACCESS_KEY",
                    )
                })?;
                builder.credentials_provider(provider)
            }
        };
        let store = Self { client: Client::from_conf(builder.build()), bucket: settings.bucket.clone() };
        Ok(store)
    }
}

impl ObjectStore for S3Store {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn put<'a>(&'a self, key: &'a str, content_type: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            check_key(key)?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .content_length(bytes.len() as i64)
                .body(bytes.into())
                .send()
                .await
                .map_err(|err| backend("storing", key, err))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<ByteStream, StoreError>> {
        Box::pin(async move {
            check_key(key)?;
            let output = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
                Ok(output) => output,
                Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                    return Err(StoreError::NotFound(key.to_owned()));
                }
                Err(err) => return Err(backend("fetching", key, err)),
            };
            let owned_key = key.to_owned();
            let stream = futures::stream::unfold(Some(output.body), move |body| {
                let key = owned_key.clone();
                async move {
                    let mut body = body?;
                    match body.next().await? {
                        Ok(chunk) => Some((Ok(chunk), Some(body))),
                        // An error ends the stream.
                        Err(err) => Some((Err(backend("reading", &key, err)), None)),
                    }
                }
            });
            Ok(stream.boxed())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            check_key(key)?;
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|err| backend("removing", key, err))?;
            Ok(())
        })
    }
}
