//! Application assembly: shared state, start-up, serving, shutdown.
//!
//! [`Application::build`] does everything that can fail at start-up
//! (connect, migrate, seed, bind) and reports it as a [`StartupError`] that
//! names the setting at fault. Tests build the same application on port 0.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Instant};

use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    db::{self, ConnectError, StatementCounter},
    domain::users,
    error::AppError,
    graphql::{self, ChatSchema},
    http,
};

/// Services shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub redis: Option<ConnectionManager>,
    pub schema: ChatSchema,
    pub statements: Arc<StatementCounter>,
}

/// A start-up failure, worded for an operator: one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] ConnectError),
    #[error("REDIS_URL: cannot connect to {url}: {reason}")]
    Redis { url: String, reason: String },
    #[error("BIND_ADDR: cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("SEED_USERS: seeding failed: {0}")]
    Seed(String),
}

/// Open the database, apply migrations and make sure seeded users exist.
pub async fn prepare_database(
    config: &Config,
) -> Result<(DatabaseConnection, Arc<StatementCounter>), StartupError> {
    let (db, statements) = db::connect(config).await?;
    db::migrate(&db, config).await?;
    if config.seed_users > 0 {
        users::seed(&db, config.seed_users)
            .await
            .map_err(|e| StartupError::Seed(seed_reason(e)))?;
    }
    Ok((db, statements))
}

fn seed_reason(error: AppError) -> String {
    match error {
        AppError::Internal(source) => source.to_string(),
        other => other.to_string(),
    }
}

/// Connect to Redis when configured; a configured but unreachable Redis stops start-up.
pub async fn connect_redis(config: &Config) -> Result<Option<ConnectionManager>, StartupError> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let shown = db::redact(url);
    let fail = |reason: String| StartupError::Redis {
        url: shown.clone(),
        reason,
    };
    let client = redis::Client::open(url.as_str()).map_err(|e| fail(e.to_string()))?;
    let manager = tokio::time::timeout(config.db_connect_timeout(), ConnectionManager::new(client))
        .await
        .map_err(|_| fail("timed out".to_owned()))?
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(manager))
}

/// A built application, bound to its port and ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let started = Instant::now();
        let (db, statements) = prepare_database(&config).await?;
        let redis = connect_redis(&config).await?;
        let schema = graphql::build(&config, db.clone());
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| StartupError::Bind {
                addr: config.bind,
                reason: e.to_string(),
            })?;
        let state = AppState {
            config: Arc::new(config),
            db,
            redis,
            schema,
            statements,
        };
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "application ready"
        );
        Ok(Application { listener, state })
    }

    /// The address actually bound (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` resolves, then let in-flight requests finish
    /// (for at most the configured grace period).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let grace = self.state.config.shutdown_grace();
        let addr = self.local_addr();
        let router = http::router(self.state);
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(self.listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = signalled_tx.send(());
        });
        tracing::info!(%addr, "listening");
        let server = tokio::spawn(async move { server.await });
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => log_exit(result),
            _ = signalled_rx => {
                tracing::info!("shutting down: draining requests");
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => log_exit(result),
                    Err(_) => tracing::warn!("grace period over; dropping open connections"),
                }
            }
        }
    }
}

fn log_exit(result: Result<std::io::Result<()>, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => tracing::info!("server stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "server failed"),
        Err(e) => tracing::error!(error = %e, "server task failed"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
