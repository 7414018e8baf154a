//! Application assembly: shared state, start-up, serving, shutdown.
//!
//! [`Application::build`] does everything that can fail at start-up
//! (connect, migrate, seed, reach Redis and Faktory, bind) and reports it as
//! a [`StartupError`] that names the setting at fault. [`Application::run_until`]
//! serves HTTP and runs the background services (outbox dispatcher, embedded
//! worker pool, task purge) until shutdown, then drains requests and lets
//! running jobs finish. Tests build the same application on port 0.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Instant};

use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    accounts::Accounts,
    cache::UserListCache,
    config::Config,
    db::{self, ConnectError, StatementCounter},
    domain::{self, tasks, users},
    error::AppError,
    events::{EventBus, LocalBus, redis::RedisBus},
    graphql, http,
    identity::KnownUsers,
    jobs::{
        Jobs,
        dispatcher::Dispatcher,
        faktory::{FaktoryConfig, FaktoryError, FaktoryQueue},
        queue::{InProcessQueue, JobQueue},
        worker::{JobContext, WorkerPool},
    },
    presence::Presence,
    ratelimit::{RateLimiter, Throttle},
    readmodel::{RoomLists, RoomViews},
    sends::Sends,
    service::{permissions::Permissions, sessions::Sessions},
    supervisor::Supervisor,
    typing::Typing,
    versions::Versions,
};

/// Services shared by every request handler. Handlers and middleware take
/// a clone of it per request, so it is one `Arc`: a clone is one atomic
/// increment, not one per service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Services {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub redis: Option<ConnectionManager>,
    pub graphql: graphql::Gateway,
    pub statements: Arc<StatementCounter>,
    pub jobs: Jobs,
    pub queue: Arc<dyn JobQueue>,
    pub events: Arc<dyn EventBus>,
    pub accounts: Accounts,
    pub sends: Sends,
    pub throttle: Arc<Throttle>,
    /// The hot-room read model.
    pub views: Arc<RoomViews>,
    /// The legacy room lists, rendered.
    pub room_lists: RoomLists,
    pub typing: Arc<Typing>,
    pub presence: Arc<Presence>,
    pub permissions: Arc<Permissions>,
    /// The live sessions (websockets) of this instance.
    pub sessions: Arc<Sessions>,
    pub supervisor: Arc<Supervisor>,
}

/// A start-up failure, worded for an operator: one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] ConnectError),
    #[error("REDIS_URL: cannot connect to {url}: {reason}")]
    Redis { url: String, reason: String },
    #[error(transparent)]
    Faktory(#[from] FaktoryError),
    #[error("BIND_ADDR: cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("SEED_USERS: seeding failed: {0}")]
    Seed(String),
    #[error("database: {0}")]
    Recovery(String),
}

/// Open the database, apply migrations and make sure seeded users exist.
/// Returns the connection, its statement counter and how many users were seeded.
pub async fn prepare_database(
    config: &Config,
) -> Result<(DatabaseConnection, Arc<StatementCounter>, usize), StartupError> {
    let (db, statements) = db::connect(config).await?;
    db::migrate(&db, config).await?;
    let seeded = if config.seed_users > 0 {
        users::seed(&db, config.seed_users)
            .await
            .map_err(|e| StartupError::Seed(reason(e)))?
    } else {
        0
    };
    Ok((db, statements, seeded))
}

fn reason(error: AppError) -> String {
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

/// The Faktory settings, when `FAKTORY_URL` is set.
pub fn faktory_config(config: &Config) -> Result<Option<FaktoryConfig>, StartupError> {
    config
        .faktory_url
        .as_deref()
        .map(|url| {
            FaktoryConfig::from_url(
                url,
                &config.faktory_queue,
                config.job_reserve(),
                config.job_max_attempts,
            )
        })
        .transpose()
        .map_err(StartupError::from)
}

/// Where the versions of cached data live: Redis when there is one (the
/// watched ones heard and trusted under a lease), else the database (right
/// for any number of instances on it).
pub fn versions(
    config: &Config,
    redis: Option<&ConnectionManager>,
    db: &DatabaseConnection,
) -> Arc<Versions> {
    match redis {
        Some(connection) => {
            let client = config
                .redis_url
                .as_deref()
                .and_then(|url| redis::Client::open(url).ok());
            Versions::redis(
                connection.clone(),
                client.map(|client| (client, config.cache_lease())),
                &config.redis_key_prefix,
            )
        }
        None => Versions::database(db.clone()),
    }
}

/// The event bus for this configuration: Redis pub/sub across instances
/// when Redis is configured, in-process otherwise.
pub fn event_bus(
    config: &Config,
    redis: Option<&ConnectionManager>,
    db: &DatabaseConnection,
) -> Arc<dyn EventBus> {
    let versions = versions(config, redis, db);
    match (redis, config.redis_url.as_deref()) {
        (Some(connection), Some(url)) => match redis::Client::open(url) {
            Ok(client) => Arc::new(RedisBus::start(
                client,
                connection.clone(),
                format!("{}events", config.redis_key_prefix),
                versions,
            )),
            Err(e) => {
                tracing::warn!(error = %e, "events stay in this process");
                Arc::new(LocalBus::new(versions))
            }
        },
        _ => Arc::new(LocalBus::new(versions)),
    }
}

/// Background work that runs beside the HTTP server.
struct Background {
    dispatcher: Arc<Dispatcher>,
    pool: Option<WorkerPool>,
}

/// A built application, bound to its port and ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    services: Background,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let started = Instant::now();
        if config.legacy_identity && !config.bind.ip().is_loopback() {
            tracing::warn!(
                bind = %config.bind,
                "legacy identity is on and the server listens beyond this machine: anyone who \
                 can reach it can act as any user with ?user_id=N / X-User-Id and read any task \
                 by its id; set LEGACY_IDENTITY=false unless every client is trusted"
            );
        }
        // Before seeding, which hashes the seeded users' password.
        domain::passwords::limit(config.password_hashing());
        let (db, statements, seeded) = prepare_database(&config).await?;
        let redis = connect_redis(&config).await?;
        let events = event_bus(&config, redis.as_ref(), &db);
        let job_context = JobContext {
            db: db.clone(),
            events: events.clone(),
        };

        let (queue, pool): (Arc<dyn JobQueue>, Option<WorkerPool>) = match faktory_config(&config)?
        {
            Some(faktory) => (Arc::new(FaktoryQueue::open(faktory).await?), None),
            None => {
                // The in-process queue lived in memory: whatever was
                // unfinished when the process stopped goes out again.
                let requeued = tasks::requeue_unfinished(&db)
                    .await
                    .map_err(|e| StartupError::Recovery(reason(e)))?;
                if requeued > 0 {
                    tracing::info!(requeued, "unfinished tasks queued again");
                }
                let (queue, receiver) = InProcessQueue::new(config.job_queue_capacity);
                let pool = WorkerPool {
                    ctx: job_context.clone(),
                    queue: queue.clone(),
                    receiver,
                    workers: config.job_workers,
                    max_attempts: config.job_max_attempts,
                };
                (Arc::new(queue), Some(pool))
            }
        };
        let (handoff, handoff_receiver) = mpsc::channel(config.job_queue_capacity.max(1));
        let jobs = Jobs::new(db.clone(), events.clone(), handoff);
        let dispatcher = Arc::new(Dispatcher {
            db: db.clone(),
            queue: queue.clone(),
            handoff: tokio::sync::Mutex::new(handoff_receiver),
            sweep_every: config.outbox_sweep(),
            start_timeout: config.job_start_timeout(),
            // Longer than a job may hold its reservation through every retry.
            lease: (config.job_reserve() * 4).max(std::time::Duration::from_secs(300)),
        });

        let lists = Arc::new(match &redis {
            Some(connection) => UserListCache::redis(
                events.versions().clone(),
                connection.clone(),
                &config.redis_key_prefix,
            ),
            None => UserListCache::new(events.versions().clone()),
        });
        let known_users = Arc::new(KnownUsers::new(std::time::Duration::from_secs(5)));
        let limiter = match &redis {
            Some(connection) => RateLimiter::redis(connection.clone(), &config.redis_key_prefix),
            None => RateLimiter::in_process(),
        };
        let throttle = Arc::new(Throttle::new(limiter, &config));
        let accounts = Accounts::new(
            db.clone(),
            lists,
            known_users,
            throttle.clone(),
            events.clone(),
        );
        if seeded > 0 {
            accounts.lists_changed().await;
        }
        let sends = Sends::new(db.clone(), events.clone(), jobs.clone(), throttle.clone());
        let typing = Typing::start(
            db.clone(),
            events.clone(),
            throttle.clone(),
            config.typing_ttl(),
        );
        let presence = match &redis {
            Some(connection) => Presence::redis(
                connection.clone(),
                &config.redis_key_prefix,
                db.clone(),
                events.clone(),
                config.presence_ttl(),
            ),
            None => Presence::in_process(db.clone(), events.clone(), config.presence_ttl()),
        };
        let permissions = Permissions::new(db.clone(), events.versions().clone());
        let sessions = Sessions::start(db.clone(), &events);
        let schema = graphql::build(
            &config,
            db.clone(),
            graphql::Services {
                sends: sends.clone(),
                accounts: accounts.clone(),
                events: events.clone(),
                typing: typing.clone(),
                presence: presence.clone(),
                throttle: throttle.clone(),
                permissions: permissions.clone(),
            },
        );
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| StartupError::Bind {
                addr: config.bind,
                reason: e.to_string(),
            })?;
        let views = RoomViews::start(
            db.clone(),
            &events,
            usize::from(config.read_model_window),
            config.read_model_bytes,
        );
        // The rendered room lists get a quarter of the read model's memory.
        let room_lists = RoomLists::new(events.versions().clone(), config.read_model_bytes / 4);
        let graphql =
            graphql::Gateway::new(schema, db.clone(), views.clone(), presence.clone(), &config);
        let state = AppState(Arc::new(Services {
            config: Arc::new(config),
            db,
            redis,
            graphql,
            statements,
            jobs,
            queue,
            events,
            accounts,
            sends,
            throttle,
            views,
            room_lists,
            typing,
            presence,
            permissions,
            sessions,
            supervisor: Arc::new(Supervisor::default()),
        }));
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "application ready"
        );
        Ok(Application {
            listener,
            state,
            services: Background { dispatcher, pool },
        })
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

    /// Serve until `shutdown` resolves; then drain in-flight requests and
    /// let running jobs finish (each for at most the grace period).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Application {
            listener,
            state,
            services,
        } = self;
        let config = state.config.clone();
        let grace = config.shutdown_grace();
        let addr = listener.local_addr().ok();

        let (stop, stopping) = watch::channel(false);
        let mut background = JoinSet::new();
        let supervisor = state.supervisor.clone();
        let dispatcher = services.dispatcher;
        let watching = stopping.clone();
        background.spawn(supervised(supervisor.spawn(
            "dispatcher",
            stopping.clone(),
            move || dispatcher.clone().run(watching.clone()),
        )));
        if let Some(pool) = services.pool {
            let watching = stopping.clone();
            background.spawn(supervised(supervisor.spawn(
                "worker_pool",
                stopping.clone(),
                move || pool.clone().run(watching.clone()),
            )));
        }
        let (db, retention, watching) =
            (state.db.clone(), config.task_retention(), stopping.clone());
        background.spawn(supervised(supervisor.spawn(
            "task_purge",
            stopping.clone(),
            move || purge_finished_tasks(db.clone(), retention, watching.clone()),
        )));

        if state.redis.is_some() {
            let (presence, watching) = (state.presence.clone(), stopping.clone());
            background.spawn(supervised(supervisor.spawn(
                "presence_beat",
                stopping.clone(),
                move || beat_presence(presence.clone(), watching.clone()),
            )));
        }

        let settings = http::server::Settings::from_config(&config);
        let router = http::router(state);
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let server = http::server::serve(listener, router, settings, async move {
            shutdown.await;
            let _ = signalled_tx.send(());
        });
        tracing::info!(?addr, "listening");
        let server = tokio::spawn(server);
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

        tracing::info!("stopping background services; running jobs finish");
        let _ = stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while background.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("grace period over; abandoning running jobs (they will run again)");
            background.abort_all();
        }
    }
}

/// Wait for a supervised loop to end (at shutdown).
async fn supervised(handle: tokio::task::JoinHandle<()>) {
    let _ = handle.await;
}

/// Delete finished tasks older than `retention`, every ten minutes.
async fn purge_finished_tasks(
    db: DatabaseConnection,
    retention: chrono::Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let period = std::time::Duration::from_secs(600);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = every.tick() => {
                match tasks::purge_finished(&db, domain::now() - retention).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged finished tasks"),
                    Err(e) => tracing::warn!(error = %e, "task purge failed"),
                }
            }
            _ = crate::shutdown::requested(&mut stopping) => return,
        }
    }
}

/// Beat for this instance's connected users and sweep lapsed ones.
async fn beat_presence(presence: Arc<Presence>, mut stopping: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(presence.beat_every());
    loop {
        tokio::select! {
            _ = every.tick() => presence.beat().await,
            _ = crate::shutdown::requested(&mut stopping) => return,
        }
    }
}

fn log_exit(result: Result<(), tokio::task::JoinError>) {
    match result {
        Ok(()) => tracing::info!("server stopped"),
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
