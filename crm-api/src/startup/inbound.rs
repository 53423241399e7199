//! `borcelle inbound`: the SMTP receiver of inbound mail on its own (the chart's inbound
//! Deployment), filing into the same database and storage as `serve` and telling the owners'
//! pages over Redis.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use borcelle_engine::inbound::{Addresses, InboundSettings, Inbox, Receiver};
use borcelle_engine::settings::StorageSettings;
use borcelle_engine::storage;
use borcelle_store::DatabaseSettings;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::event_bus;
use crate::http::ops::Operations;
use crate::metrics::Metrics;

/// What `borcelle inbound` needs.
pub struct InboundProcessSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub health_listen: Option<SocketAddr>,
    pub database: DatabaseSettings,
    pub redis_url: Option<secrecy::SecretString>,
    pub storage: StorageSettings,
    pub inbound: InboundSettings,
}

/// Runs the receiver until `shutdown` completes.
pub async fn run_inbound(settings: InboundProcessSettings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let db = borcelle_store::connect_and_migrate(&settings.database).await?;
    let stop = CancellationToken::new();
    if settings.redis_url.is_none() {
        tracing::warn!("REDIS_URL is unset: the owners' open pages will not hear of replies until they reload");
    }
    let events = event_bus(settings.redis_url.as_ref(), stop.clone()).await?;
    let addresses =
        Addresses::load(&db, &settings.inbound.domain).await.context("loading the inbound addresses' key")?;
    let store = storage::build_store(&settings.storage).await?;
    let inbox = Inbox { db: db.clone(), store, events: events.clone(), addresses };
    let listener = TcpListener::bind(settings.inbound.listen)
        .await
        .with_context(|| format!("binding {} (inbound SMTP)", settings.inbound.listen))?;
    let receiver = Receiver::new(inbox, settings.inbound.clone())?;
    let running = tokio::spawn(receiver.run(listener, stop.clone()));
    let health = match settings.health_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            let router = crate::http::ops::router(Operations {
                db: db.clone(),
                events: None,
                metrics: Arc::new(Metrics::default()),
            });
            let stopped = stop.clone();
            Some(tokio::spawn(async move {
                axum::serve(listener, router).with_graceful_shutdown(async move { stopped.cancelled().await }).await
            }))
        }
        None => None,
    };
    shutdown.await;
    tracing::info!("inbound receiver stopping");
    stop.cancel();
    let _ = running.await;
    if let Some(health) = health {
        let _ = health.await;
    }
    db.close().await;
    Ok(())
}
