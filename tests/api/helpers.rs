//! Test harness: start the real application on an ephemeral port, with its
//! own database, and talk HTTP to it.
//!
//! Every scenario runs on SQLite (a temporary file). When `TEST_DATABASE_URL`
//! is set it also runs on PostgreSQL, each test in a freshly created
//! database; `TEST_REDIS_URL` adds Redis, each test under its own key prefix.

use std::sync::Arc;

use chat_gateway::{app::Application, config::Config, db::StatementCounter, events::EventBus};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a test's database lives in: its SQLite file's directory (removed
/// with it), or its own PostgreSQL database, dropped when this is.
pub enum TestDb {
    Dir(#[allow(dead_code)] TempDir),
    Postgres { admin: String, name: String },
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let TestDb::Postgres { admin, name } = self else {
            return;
        };
        let (admin, name) = (admin.clone(), name.clone());
        // A runtime of its own, on a thread of its own: this may run inside
        // the test's runtime. FORCE ends what is still connected.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let db = Database::connect(&admin).await.ok()?;
                let _ = db
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
                db.close().await.ok()
            })
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: DatabaseConnection,
    pub statements: Arc<StatementCounter>,
    pub events: Arc<dyn EventBus>,
    pub jobs: chat_gateway::jobs::Jobs,
    pub config: Config,
    pub backend: Backend,
    dir: Option<TestDb>,
    shutdown: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

/// The PostgreSQL server to create test databases on, if any. In CI it must
/// be set, so the PostgreSQL half of the suite can never be skipped there.
fn postgres_base_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but TEST_DATABASE_URL is not set")
        }
        _ => None,
    }
}

/// Create an empty, uniquely named database next to the one in `base`;
/// its URL, and what drops it when the test is done.
pub async fn fresh_postgres_database(base: &str) -> (String, TestDb) {
    let name = format!("chat_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(base)
        .await
        .expect("TEST_DATABASE_URL must be reachable");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let mut url = url::Url::parse(base).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    (
        url.to_string(),
        TestDb::Postgres {
            admin: base.to_owned(),
            name,
        },
    )
}

/// A configuration for a test app on `database_url`, on an ephemeral port.
pub fn test_config(database_url: String) -> Config {
    let mut config = Config::defaults();
    config.database_url = database_url;
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.db_max_connections = 5;
    config.shutdown_grace_secs = 1;
    // Short leases: a test's first user write waits out a fresh epoch.
    config.cache_lease_ms = 300;
    config.redis_url = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    config.redis_key_prefix = format!("chat-test:{}:", uuid::Uuid::new_v4().simple());
    config
}

/// A database of the given backend for one test: `None` when the backend is
/// not configured on this machine.
pub async fn test_database(backend: Backend) -> Option<(String, Option<TestDb>)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("chat.db").display());
            Some((url, Some(TestDb::Dir(dir))))
        }
        Backend::Postgres => {
            let base = postgres_base_url()?;
            let (url, db) = fresh_postgres_database(&base).await;
            Some((url, Some(db)))
        }
    }
}

/// Start an app, letting the test adjust its configuration first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let (url, dir) = test_database(backend).await?;
    let mut config = test_config(url);
    adjust(&mut config);
    Some(start(config, backend, dir).await)
}

/// Start an app on an existing configuration (a second instance on the same
/// database, a restart).
pub async fn start(config: Config, backend: Backend, dir: Option<TestDb>) -> TestApp {
    let application = Application::build(config.clone())
        .await
        .unwrap_or_else(|e| panic!("application failed to start: {e}"));
    let address = format!("http://{}", application.local_addr());
    let state = application.state();
    let (db, statements, events, jobs) = (
        state.db.clone(),
        state.statements.clone(),
        state.events.clone(),
        state.jobs.clone(),
    );
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        statements,
        events,
        jobs,
        config,
        backend,
        dir,
        shutdown,
        server,
    }
}

impl TestApp {
    /// Shut the app down gracefully, keeping its database; returns what a
    /// restart needs.
    pub async fn stop(self) -> (Config, Backend, Option<TestDb>) {
        let _ = self.shutdown.send(());
        let _ = self.server.await;
        (self.config, self.backend, self.dir)
    }

    /// Stop the app's own loops at once, as a crash would: no graceful
    /// close, no cleanup (its open connections are left hanging). Returns
    /// its database's keeper: other instances may still use it.
    #[must_use]
    pub fn kill(self) -> Option<TestDb> {
        self.server.abort();
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POST a GraphQL operation, optionally as a user (legacy `X-User-Id`),
    /// and return the whole response body.
    pub async fn graphql_as(&self, user: Option<i64>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(id) = user {
            request = request.header("x-user-id", id.to_string());
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert!(
            status.is_success() || body.get("errors").is_some(),
            "unexpected {status}: {body}"
        );
        body
    }

    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.graphql_as(None, query, variables).await
    }

    /// Run an operation that must succeed; returns `data`.
    pub async fn ok_as(&self, user: Option<i64>, query: &str, variables: Value) -> Value {
        let body = self.graphql_as(user, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        self.ok_as(None, query, variables).await
    }
}

impl TestApp {
    /// Create a group room as `creator` with the named members; returns its id.
    pub async fn create_room(&self, creator: i64, name: &str, members: &[&str]) -> i64 {
        let data = self
            .ok_as(
                Some(creator),
                "mutation($name: String!, $members: [String!]!) {
                    createRoom(name: $name, memberUsernames: $members) { id } }",
                json!({"name": name, "members": members}),
            )
            .await;
        data["createRoom"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// Store a message the way a send job does; returns its id.
    pub async fn store_message(&self, room: i64, sender: i64, text: &str) -> i64 {
        chat_gateway::domain::messages::store(
            &self.db,
            self.events.as_ref(),
            room,
            Some(sender),
            text,
            None,
        )
        .await
        .expect("message stored")
        .id
    }

    /// The direct room of two users, created if needed; returns its id.
    pub async fn direct_room(&self, a: i64, b: i64) -> i64 {
        chat_gateway::domain::rooms::find_or_create_direct(&self.db, self.events.as_ref(), a, b)
            .await
            .expect("direct room")
            .id
    }

    /// Sign in as `username` / `password`; returns the bearer token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let data = self
            .ok(
                "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                json!({"u": username, "p": password}),
            )
            .await;
        data["login"]["token"].as_str().unwrap().to_owned()
    }

    /// POST a GraphQL operation with a bearer token.
    pub async fn graphql_bearer(&self, token: &str, query: &str, variables: Value) -> Value {
        self.client
            .post(self.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON body")
    }
}

impl TestApp {
    /// Send a direct message as `from`; returns the task id.
    pub async fn send_direct(&self, from: i64, to: i64, text: &str) -> String {
        let data = self
            .ok_as(
                Some(from),
                "mutation($to: ID!, $text: String!) {
                    sendDirectMessage(toUserId: $to, text: $text) { id state } }",
                json!({"to": to, "text": text}),
            )
            .await;
        data["sendDirectMessage"]["id"].as_str().unwrap().to_owned()
    }

    /// Send a message to a room as `from`; returns the task id.
    pub async fn send_group(&self, from: i64, room: i64, text: &str) -> String {
        let data = self
            .ok_as(
                Some(from),
                "mutation($room: ID!, $text: String!) {
                    sendGroupMessage(roomId: $room, text: $text) { id state } }",
                json!({"room": room, "text": text}),
            )
            .await;
        data["sendGroupMessage"]["id"].as_str().unwrap().to_owned()
    }

    /// Wait (up to `timeout`) for a task to finish; returns it, as its
    /// owner reads it.
    pub async fn finished_task_within(&self, id: &str, timeout: std::time::Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        let task_id: uuid::Uuid = id.parse().expect("a task id");
        let task = chat_gateway::domain::tasks::get(&self.db, task_id)
            .await
            .expect("the task exists");
        let owner = chat_gateway::domain::tasks::owner(&task).expect("the task has an owner");
        let token = if self.config.legacy_identity {
            None
        } else {
            let user = chat_gateway::domain::users::get(&self.db, owner)
                .await
                .unwrap();
            Some(
                self.login(
                    &user.user.username,
                    chat_gateway::domain::users::SEED_PASSWORD,
                )
                .await,
            )
        };
        loop {
            let query = "query($id: ID!) { task(id: $id) { id kind state attempts
                        result { id text room { id name } sender { username } }
                        error { kind message } } }";
            let body = match &token {
                Some(token) => self.graphql_bearer(token, query, json!({"id": id})).await,
                None => self.graphql_as(Some(owner), query, json!({"id": id})).await,
            };
            assert!(body.get("errors").is_none(), "unexpected errors: {body}");
            let data = body["data"].clone();
            let state = data["task"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if state == "SUCCESS" || state == "FAILURE" {
                return data["task"].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} still {state} after {timeout:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    pub async fn finished_task(&self, id: &str) -> Value {
        self.finished_task_within(id, std::time::Duration::from_secs(15))
            .await
    }

    /// How many messages carry this text.
    pub async fn count_messages(&self, text: &str) -> u64 {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        entity::message::Entity::find()
            .filter(entity::message::Column::Text.eq(text))
            .count(&self.db)
            .await
            .unwrap()
    }
}

/// The `extensions.code` of the first error of a GraphQL response.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {body}"))
}

/// Declare scenarios that run once per backend. Each scenario is an
/// `async fn(TestApp)` in the calling module. An optional
/// `config = |c: &mut Config| ...;` first adjusts every app's configuration.
#[macro_export]
macro_rules! scenarios {
    (config = $adjust:expr; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::helpers::spawn_app_with(
                        $crate::helpers::Backend::Sqlite,
                        $adjust,
                    )
                    .await
                    .expect("SQLite is always available");
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::helpers::spawn_app_with(
                        $crate::helpers::Backend::Postgres,
                        $adjust,
                    )
                    .await
                    {
                        Some(app) => super::$name(app).await,
                        None => eprintln!("TEST_DATABASE_URL is not set: PostgreSQL run skipped"),
                    }
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::scenarios!(config = |_: &mut chat_gateway::config::Config| {}; $($name),*);
    };
}

/// For tests that count SQL statements: no periodic background statements
/// (the outbox sweep) while they measure.
pub fn quiet(config: &mut Config) {
    config.outbox_sweep_ms = 3_600_000;
}
