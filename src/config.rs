//! Configuration: command line flags and environment variables.
//!
//! This is the only module that reads the environment. Every setting has a
//! flag and an environment variable; `--help` documents each one. The rest of
//! the service receives a [`Config`] value and never looks at `std::env`.

use std::{net::SocketAddr, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::ratelimit::Rate;

/// GraphQL chat gateway with a legacy REST compatibility layer.
#[derive(Debug, Parser)]
#[command(name = "chat-gateway", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Migrate, seed and serve HTTP (the default when no command is given).
    Serve,
    /// Run background job handlers fetching from the Faktory server at FAKTORY_URL.
    Worker,
    /// Apply, revert or inspect database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Create the seeded users (user_1 .. user_N) that do not exist yet.
    Seed,
    /// Print the GraphQL schema (SDL) and exit.
    Schema,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Revert the last applied migration (or `--steps N` of them).
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
    /// Revert every migration and apply them all again (destroys all data).
    Fresh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Every setting of the service.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database to use: `sqlite://PATH?mode=rwc` (embedded) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://chat.db?mode=rwc",
        global = true
    )]
    pub database_url: String,

    /// Largest number of pooled database connections.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 16, global = true)]
    pub db_max_connections: u32,

    /// Number of database connections kept open while idle.
    #[arg(long, env = "DB_MIN_CONNECTIONS", default_value_t = 1, global = true)]
    pub db_min_connections: u32,

    /// Seconds to wait for a database connection (at start-up and from the pool).
    #[arg(
        long,
        env = "DB_CONNECT_TIMEOUT_SECS",
        default_value_t = 5,
        global = true
    )]
    pub db_connect_timeout_secs: u64,

    /// SQLite only: milliseconds a statement waits for a lock held by another writer.
    #[arg(
        long,
        env = "SQLITE_BUSY_TIMEOUT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub sqlite_busy_timeout_ms: u64,

    /// Redis for the user-list cache and cross-instance events (e.g. `redis://127.0.0.1:6379`).
    /// Unset: in-process cache and events.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "chat:", global = true)]
    pub redis_key_prefix: String,

    /// Faktory work server for background jobs (e.g. `tcp://:password@127.0.0.1:7419`).
    /// Unset: an in-process queue and worker pool inside `serve`.
    #[arg(long, env = "FAKTORY_URL", global = true)]
    pub faktory_url: Option<String>,

    /// Faktory queue the jobs go to and workers fetch from.
    #[arg(long, env = "FAKTORY_QUEUE", default_value = "chat", global = true)]
    pub faktory_queue: String,

    /// Jobs run at once: the in-process worker pool of `serve`, or the
    /// concurrency of `worker`.
    #[arg(long, env = "JOB_WORKERS", default_value_t = 4, global = true)]
    pub job_workers: usize,

    /// Jobs the in-process queue holds before the dispatcher waits.
    #[arg(
        long,
        env = "JOB_QUEUE_CAPACITY",
        default_value_t = 10_000,
        global = true
    )]
    pub job_queue_capacity: usize,

    /// Seconds a worker may hold a Faktory job before it is handed to another
    /// worker (a worker that died mid-job is noticed this fast).
    #[arg(long, env = "JOB_RESERVE_SECS", default_value_t = 30, global = true)]
    pub job_reserve_secs: u64,

    /// Times a job runs at most when infrastructure fails (first run plus retries).
    #[arg(long, env = "JOB_MAX_ATTEMPTS", default_value_t = 10, global = true)]
    pub job_max_attempts: u32,

    /// Seconds a task handed to Faktory may wait to start before it is
    /// pushed again (a broker that restarted without its data lost it; the
    /// task id keeps the message stored once either way).
    #[arg(
        long,
        env = "JOB_START_TIMEOUT_SECS",
        default_value_t = 15,
        global = true
    )]
    pub job_start_timeout_secs: u64,

    /// Milliseconds between sweeps of the outbox for tasks not yet queued.
    #[arg(long, env = "OUTBOX_SWEEP_MS", default_value_t = 1000, global = true)]
    pub outbox_sweep_ms: u64,

    /// Hours finished tasks are kept before they are purged.
    #[arg(
        long,
        env = "TASK_RETENTION_HOURS",
        default_value_t = 24,
        global = true
    )]
    pub task_retention_hours: u32,

    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0:8000", global = true)]
    pub bind: SocketAddr,

    /// How many seeded users (user_1 .. user_N, password `Passw0rd!`) `serve` makes sure exist;
    /// 0 disables seeding.
    #[arg(long, env = "SEED_USERS", default_value_t = 15, global = true)]
    pub seed_users: u32,

    /// Accept the legacy ways of naming the acting user (`?user_id=N`, `X-User-Id: N`,
    /// websocket `{"userId": N}`) in addition to bearer tokens. `--legacy-identity=false`
    /// turns them off.
    #[arg(
        long,
        env = "LEGACY_IDENTITY",
        default_value_t = true,
        action = ArgAction::Set,
        global = true
    )]
    pub legacy_identity: bool,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax (e.g. `info`, `chat_gateway=debug,sqlx=warn`).
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,

    /// Largest accepted HTTP request body, in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub body_limit_bytes: usize,

    /// Deepest nesting of fields a GraphQL operation may have (introspection
    /// excepted: its shape is bounded by the schema).
    #[arg(long, env = "GRAPHQL_MAX_DEPTH", default_value_t = 12, global = true)]
    pub graphql_max_depth: usize,

    /// Most tokens (names, punctuation, values) a GraphQL document may have.
    #[arg(
        long,
        env = "GRAPHQL_MAX_TOKENS",
        default_value_t = 5000,
        global = true
    )]
    pub graphql_max_tokens: usize,

    /// Most fields a GraphQL operation may select, counted with every
    /// fragment spread expanded.
    #[arg(
        long,
        env = "GRAPHQL_MAX_FIELDS",
        default_value_t = 2000,
        global = true
    )]
    pub graphql_max_fields: usize,

    /// Most aliased fields a GraphQL operation may have (fragments expanded).
    #[arg(long, env = "GRAPHQL_MAX_ALIASES", default_value_t = 30, global = true)]
    pub graphql_max_aliases: usize,

    /// Most fields at the root of a GraphQL operation (fragments expanded).
    #[arg(
        long,
        env = "GRAPHQL_MAX_ROOT_FIELDS",
        default_value_t = 20,
        global = true
    )]
    pub graphql_max_root_fields: usize,

    /// Most directives a GraphQL operation may carry (fragments expanded).
    #[arg(
        long,
        env = "GRAPHQL_MAX_DIRECTIVES",
        default_value_t = 50,
        global = true
    )]
    pub graphql_max_directives: usize,

    /// Most items of any list in a GraphQL argument or variable.
    #[arg(
        long,
        env = "GRAPHQL_MAX_LIST_ITEMS",
        default_value_t = 1000,
        global = true
    )]
    pub graphql_max_list_items: usize,

    /// Milliseconds a GraphQL query or mutation may run before it is cancelled.
    #[arg(
        long,
        env = "GRAPHQL_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub graphql_timeout_ms: u64,

    /// Largest GraphQL response, in bytes; a larger one is replaced by an error.
    #[arg(
        long,
        env = "GRAPHQL_MAX_RESPONSE_BYTES",
        default_value_t = 4 * 1024 * 1024,
        global = true
    )]
    pub graphql_max_response_bytes: usize,

    /// Memory for the hot-room read model, in bytes: rooms being read keep
    /// their members and newest messages here, least recently read first
    /// out. 0 turns it off (every read goes to the database).
    #[arg(
        long,
        env = "READ_MODEL_BYTES",
        default_value_t = 64 * 1024 * 1024,
        global = true
    )]
    pub read_model_bytes: usize,

    /// Newest messages the read model keeps per room (older pages and
    /// longer histories are read from the database).
    #[arg(
        long,
        env = "READ_MODEL_WINDOW",
        default_value_t = 100,
        value_parser = clap::value_parser!(u16).range(1..=1000),
        global = true
    )]
    pub read_model_window: u16,

    /// Largest complexity score a GraphQL query may have (each field counts 1; a
    /// connection counts its page size times its children).
    #[arg(
        long,
        env = "GRAPHQL_MAX_COMPLEXITY",
        default_value_t = 50_000,
        global = true
    )]
    pub graphql_max_complexity: usize,

    /// Serve the GraphQL introspection schema (`__schema`, `__type`); codegen tools need it.
    #[arg(
        long,
        env = "GRAPHQL_INTROSPECTION",
        default_value_t = true,
        action = ArgAction::Set,
        global = true
    )]
    pub graphql_introspection: bool,

    /// Largest page (`first` / `last`) a connection returns; also the default page size.
    #[arg(long, env = "MAX_PAGE_SIZE", default_value_t = 100, global = true)]
    pub max_page_size: usize,

    /// Seconds between the database re-reads of live `unreadMessages`
    /// subscriptions (they catch what a dropped event missed).
    #[arg(long, env = "UNREAD_RECHECK_SECS", default_value_t = 30, global = true)]
    pub unread_recheck_secs: u64,

    /// Seconds a websocket may stay open without `connection_init`.
    #[arg(
        long,
        env = "WS_INIT_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub ws_init_timeout_secs: u64,

    /// Seconds between websocket keep-alive messages (`ping` / `ka`).
    #[arg(long, env = "WS_KEEPALIVE_SECS", default_value_t = 15, global = true)]
    pub ws_keepalive_secs: u64,

    /// Seconds a websocket client may take to accept one message before it
    /// is disconnected (its subscriptions stop being read meanwhile).
    #[arg(
        long,
        env = "WS_SEND_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub ws_send_timeout_secs: u64,

    /// Seconds a client gets to send a complete request head, counted from
    /// when the connection opened or its previous response was sent (so
    /// this is also how long an idle keep-alive connection stays open).
    #[arg(
        long,
        env = "HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub http_header_timeout_secs: u64,

    /// Seconds a client gets to send a complete request body.
    #[arg(
        long,
        env = "HTTP_BODY_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub http_body_timeout_secs: u64,

    /// Seconds an HTTP connection may go with nothing read or written (a
    /// stalled upload, a client that stopped reading) before it is closed.
    /// Websockets have keep-alives of their own.
    #[arg(
        long,
        env = "HTTP_IDLE_TIMEOUT_SECS",
        default_value_t = 60,
        global = true
    )]
    pub http_idle_timeout_secs: u64,

    /// Most HTTP connections served at once; more wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 25_000, global = true)]
    pub max_connections: usize,

    /// Most requests served at once; past that, requests are answered 503
    /// with `Retry-After` instead of queueing.
    #[arg(
        long,
        env = "MAX_IN_FLIGHT_REQUESTS",
        default_value_t = 4096,
        global = true
    )]
    pub max_in_flight: usize,

    /// Sends one user may make per window (`N/10s`, `N/5m`, `N/1h`, or `off`).
    #[arg(
        long,
        env = "RATE_LIMIT_SENDS",
        default_value = "1000/10s",
        global = true
    )]
    pub rate_limit_sends: Rate,

    /// Sends one client address may make per window.
    #[arg(
        long,
        env = "RATE_LIMIT_SENDS_PER_ADDRESS",
        default_value = "10000/10s",
        global = true
    )]
    pub rate_limit_sends_per_address: Rate,

    /// Failed logins for one username from one address per window; past
    /// it, that address may not try that username until the window ends.
    #[arg(
        long,
        env = "RATE_LIMIT_LOGIN_FAILURES",
        default_value = "5/5m",
        global = true
    )]
    pub rate_limit_login_failures: Rate,

    /// Failed logins from one address (any username) per window.
    #[arg(
        long,
        env = "RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS",
        default_value = "30/5m",
        global = true
    )]
    pub rate_limit_login_failures_per_address: Rate,

    /// Websocket operations (`subscribe` / `start`) one user may start per window.
    #[arg(
        long,
        env = "RATE_LIMIT_WS_OPERATIONS",
        default_value = "200/10s",
        global = true
    )]
    pub rate_limit_ws_operations: Rate,

    /// Websocket operations one client address may start per window.
    #[arg(
        long,
        env = "RATE_LIMIT_WS_OPERATIONS_PER_ADDRESS",
        default_value = "20000/10s",
        global = true
    )]
    pub rate_limit_ws_operations_per_address: Rate,

    /// Typing indicators (`setTyping`) one user may send per window.
    #[arg(
        long,
        env = "RATE_LIMIT_TYPING",
        default_value = "30/10s",
        global = true
    )]
    pub rate_limit_typing: Rate,

    /// Searches (`searchMessages`) one user may run per window.
    #[arg(
        long,
        env = "RATE_LIMIT_SEARCHES",
        default_value = "60/10s",
        global = true
    )]
    pub rate_limit_searches: Rate,

    /// Accounts one client address may create (sign-ups) per window.
    #[arg(
        long,
        env = "RATE_LIMIT_SIGNUPS_PER_ADDRESS",
        default_value = "1000/1h",
        global = true
    )]
    pub rate_limit_signups_per_address: Rate,

    /// Password hashes (sign-up, login, password change) computed at once;
    /// each takes a core and about 19 MiB. 0: one per core.
    #[arg(
        long,
        env = "PASSWORD_HASH_CONCURRENCY",
        default_value_t = 0,
        global = true
    )]
    pub password_hash_concurrency: usize,

    /// Password hashes that may wait for a turn (at most five seconds);
    /// past that, sign-ups and logins are refused with `RATE_LIMITED`
    /// until the queue shortens.
    #[arg(long, env = "PASSWORD_HASH_QUEUE", default_value_t = 64, global = true)]
    pub password_hash_queue: usize,

    /// Milliseconds an instance's lease on the user and membership versions
    /// it heard lasts (with Redis): how long it may serve user lists
    /// without asking Redis, and the longest a user write waits for an
    /// instance that stopped answering.
    #[arg(long, env = "CACHE_LEASE_MS", default_value_t = 1_500, global = true)]
    pub cache_lease_ms: u64,

    /// Seconds a typing indicator lasts unless renewed.
    #[arg(long, env = "TYPING_TTL_SECS", default_value_t = 6, global = true)]
    pub typing_ttl_secs: u64,

    /// Seconds after an instance's last presence beat (sent every third of
    /// this) at which its users count as offline, should it die (Redis mode).
    #[arg(long, env = "PRESENCE_TTL_SECS", default_value_t = 30, global = true)]
    pub presence_ttl_secs: u64,

    /// Take the client address from the first `X-Forwarded-For` entry (set
    /// it only behind a proxy that writes that header).
    #[arg(
        long,
        env = "TRUST_FORWARDED_FOR",
        default_value_t = false,
        action = ArgAction::Set,
        global = true
    )]
    pub trust_forwarded_for: bool,

    /// Hours a bearer token issued by `login` stays valid.
    #[arg(long, env = "TOKEN_TTL_HOURS", default_value_t = 168, global = true)]
    pub token_ttl_hours: u32,

    /// Seconds in-flight requests get to finish after a shutdown signal.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20, global = true)]
    pub shutdown_grace_secs: u64,
}

impl Config {
    /// The configuration with every default, as `chat-gateway` with no flags
    /// and no environment would have it. Used by tests and the `schema` command.
    pub fn defaults() -> Self {
        Cli::parse_from(["chat-gateway"]).config
    }

    pub fn db_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.db_connect_timeout_secs)
    }

    pub fn sqlite_busy_timeout(&self) -> Duration {
        Duration::from_millis(self.sqlite_busy_timeout_ms)
    }

    pub fn token_ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.token_ttl_hours.max(1)))
    }

    pub fn cache_lease(&self) -> Duration {
        Duration::from_millis(self.cache_lease_ms.clamp(100, 60_000))
    }

    pub fn typing_ttl(&self) -> Duration {
        Duration::from_secs(self.typing_ttl_secs.clamp(1, 3600))
    }

    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_secs.clamp(1, 86_400))
    }

    pub fn unread_recheck(&self) -> Duration {
        Duration::from_secs(self.unread_recheck_secs.max(1))
    }

    pub fn http_header_timeout(&self) -> Duration {
        Duration::from_secs(self.http_header_timeout_secs.max(1))
    }

    pub fn http_body_timeout(&self) -> Duration {
        Duration::from_secs(self.http_body_timeout_secs.max(1))
    }

    pub fn http_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.http_idle_timeout_secs.max(1))
    }

    pub fn graphql_timeout(&self) -> Duration {
        Duration::from_millis(self.graphql_timeout_ms.max(1))
    }

    pub fn ws_init_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_init_timeout_secs.max(1))
    }

    pub fn ws_keepalive(&self) -> Duration {
        Duration::from_secs(self.ws_keepalive_secs.max(1))
    }

    pub fn ws_send_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_send_timeout_secs.max(1))
    }

    pub fn job_reserve(&self) -> Duration {
        Duration::from_secs(self.job_reserve_secs.max(1))
    }

    pub fn job_start_timeout(&self) -> Duration {
        Duration::from_secs(self.job_start_timeout_secs.max(1))
    }

    pub fn outbox_sweep(&self) -> Duration {
        Duration::from_millis(self.outbox_sweep_ms.max(10))
    }

    pub fn task_retention(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.task_retention_hours))
    }

    /// How much password hashing may run and wait at once.
    pub fn password_hashing(&self) -> crate::domain::passwords::Limits {
        let defaults = crate::domain::passwords::Limits::default();
        crate::domain::passwords::Limits {
            concurrency: match self.password_hash_concurrency {
                0 => defaults.concurrency,
                n => n,
            },
            queue: self.password_hash_queue,
            wait: defaults.wait,
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Parse the command line and the environment. An empty `REDIS_URL` or
/// `FAKTORY_URL` (as `VAR=` in a shell or a compose file leaves it) means
/// unset.
pub fn parse() -> Cli {
    let mut cli = Cli::parse();
    for url in [&mut cli.config.redis_url, &mut cli.config.faktory_url] {
        if url.as_deref().is_some_and(|u| u.trim().is_empty()) {
            *url = None;
        }
    }
    cli
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn legacy_identity_can_be_turned_off() {
        let cli = Cli::parse_from(["chat-gateway", "--legacy-identity=false", "serve"]);
        assert!(!cli.config.legacy_identity);
        let cli = Cli::parse_from(["chat-gateway", "serve"]);
        assert!(cli.config.legacy_identity);
    }
}
