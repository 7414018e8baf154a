//! Sends through a Faktory server, with the real `faktory` crate as client
//! and worker, against the protocol server of the `faktory-test-server` crate.

use std::time::Duration;

use chat_gateway::{
    app::{Application, StartupError},
    config::Config,
    domain::tasks,
    jobs::{
        faktory::{FaktoryConfig, FaktoryError, run_worker},
        worker::JobContext,
    },
};
use serde_json::Value;
use tokio::sync::watch;

use faktory_test_server::FaktoryServer;

use crate::{
    helpers::{Backend, TestApp, start, test_config, test_database},
    jobs::{break_message_inserts, group_send, heal, orphan_task},
};

const PASSWORD: &str = "s3cret";

/// An app pushing to `server`, with a worker process' handlers running.
struct Scaled {
    app: TestApp,
    stop_worker: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<Result<(), FaktoryError>>,
}

fn faktory_settings(config: &mut Config, server: &FaktoryServer) {
    config.faktory_url = Some(server.url());
    config.job_reserve_secs = 2;
    config.job_max_attempts = 4;
    config.outbox_sweep_ms = 200;
}

async fn app_with_faktory(backend: Backend, server: &FaktoryServer) -> Option<TestApp> {
    let (url, dir) = test_database(backend).await?;
    let mut config = test_config(url);
    faktory_settings(&mut config, server);
    Some(start(config, backend, dir).await)
}

fn start_worker(
    app: &TestApp,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), FaktoryError>>,
) {
    let config = &app.config;
    let faktory = FaktoryConfig::from_url(
        config.faktory_url.as_deref().unwrap(),
        &config.faktory_queue,
        config.job_reserve(),
        config.job_max_attempts,
    )
    .unwrap();
    let ctx = JobContext {
        db: app.db.clone(),
        events: app.events.clone(),
    };
    let (stop, stopping) = watch::channel(false);
    let worker = tokio::spawn(run_worker(
        faktory,
        ctx,
        2,
        stopping,
        Duration::from_secs(2),
    ));
    (stop, worker)
}

async fn scaled(backend: Backend, server: &FaktoryServer) -> Option<Scaled> {
    let app = app_with_faktory(backend, server).await?;
    let (stop_worker, worker) = start_worker(&app);
    Some(Scaled {
        app,
        stop_worker,
        worker,
    })
}

impl Scaled {
    async fn stop(self) {
        let _ = self.stop_worker.send(true);
        let result = tokio::time::timeout(Duration::from_secs(10), self.worker)
            .await
            .expect("the worker stops on request");
        assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    }
}

async fn sends_run_through_faktory(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    let Some(scaled) = scaled(backend, &server).await else {
        return;
    };
    let app = &scaled.app;
    let room = app.create_room(9, "family", &["user_7"]).await;

    let direct = app
        .finished_task(&app.send_direct(2, 3, "hey man").await)
        .await;
    assert_eq!(direct["state"], "SUCCESS", "{direct}");
    assert_eq!(direct["result"]["room"]["name"], "user_2 - user_3");
    let group = app
        .finished_task(&app.send_group(7, room, "hi fam").await)
        .await;
    assert_eq!(group["state"], "SUCCESS", "{group}");

    let refused = app
        .finished_task(&app.send_group(4, room, "nope").await)
        .await;
    assert_eq!(refused["state"], "FAILURE");
    assert_eq!(refused["error"]["kind"], "PermissionDenied");

    // What went over the wire: one job per send, versioned payload, a short
    // reservation, acknowledged (a domain failure is not a Faktory failure).
    let pushed = server.pushed();
    assert_eq!(pushed.len(), 3, "{pushed:?}");
    let kinds: Vec<&str> = pushed
        .iter()
        .map(|j| j["jobtype"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "send_direct_message",
            "send_group_message",
            "send_group_message"
        ]
    );
    for job in &pushed {
        assert_eq!(job["queue"], "chat");
        assert_eq!(job["reserve_for"], 2);
        assert_eq!(job["args"][0]["v"], 1);
        assert!(job["args"][0]["task_id"].is_string());
    }
    assert_eq!(server.acked().len(), 3);
    assert!(server.failed().is_empty(), "{:?}", server.failed());
    scaled.stop().await;
}

async fn faktory_down_at_send_time(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    server.stop().await;
    let Some(app) = app_with_faktory(backend, &server).await else {
        return;
    };
    let task = app.send_direct(4, 5, "are you there?").await;
    // Written as dispatched; the failed push takes the mark back, so the
    // outbox sweep (not the slower start timeout) pushes it later.
    let id: uuid::Uuid = task.parse().unwrap();
    let mut unmarked = false;
    for _ in 0..50 {
        if tasks::get(&app.db, id)
            .await
            .unwrap()
            .dispatched_at
            .is_none()
        {
            unmarked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(unmarked, "a task whose push failed is back in the outbox");
    let pending = app
        .ok_as(
            Some(4),
            "query($id: ID!) { task(id: $id) { state } }",
            serde_json::json!({"id": task}),
        )
        .await;
    assert_eq!(pending["task"]["state"], "PENDING");

    server.restart().await;
    let (stop_worker, worker) = start_worker(&app);
    let done = app.finished_task(&task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_eq!(app.count_messages("are you there?").await, 1);
    Scaled {
        app,
        stop_worker,
        worker,
    }
    .stop()
    .await;
}

async fn a_job_delivered_twice_stores_once(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    let Some(app) = app_with_faktory(backend, &server).await else {
        return;
    };
    let task = app.send_direct(6, 7, "once only").await;
    assert!(
        server
            .wait_until(Duration::from_secs(5), |s| s.pushed().len() == 1)
            .await
    );
    // A duplicate push of the same job, e.g. from a retried dispatch.
    let mut duplicate = server.pushed()[0].clone();
    duplicate["jid"] = Value::String(uuid::Uuid::new_v4().to_string());
    server.enqueue(duplicate).unwrap();

    let (stop_worker, worker) = start_worker(&app);
    let done = app.finished_task(&task).await;
    assert_eq!(done["state"], "SUCCESS");
    assert!(
        server
            .wait_until(Duration::from_secs(5), |s| s.acked().len() == 2)
            .await
    );
    assert_eq!(app.count_messages("once only").await, 1);
    Scaled {
        app,
        stop_worker,
        worker,
    }
    .stop()
    .await;
}

async fn a_job_held_by_a_dead_worker_is_delivered_again(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    let Some(app) = app_with_faktory(backend, &server).await else {
        return;
    };
    let task = app.send_direct(8, 9, "lost and found").await;
    assert!(
        server
            .wait_until(Duration::from_secs(5), |s| s.queue_len("chat") == 1)
            .await
    );

    // A worker fetches the job and dies without acknowledging it.
    {
        let mut doomed = faktory::Worker::builder()
            .register_fn("send_direct_message", |_job| async move {
                futures::future::pending::<Result<(), std::io::Error>>().await
            })
            .connect_to(&server.url())
            .await
            .unwrap();
        let run = tokio::spawn(async move { doomed.run(&["chat"]).await });
        assert!(
            server
                .wait_until(Duration::from_secs(5), |s| s.reserved().len() == 1)
                .await
        );
        run.abort();
        server.stop().await;
        server.restart().await;
    }
    // Its reservation (2 s) runs out; a live worker gets the job.
    let (stop_worker, worker) = start_worker(&app);
    let done = app
        .finished_task_within(&task, Duration::from_secs(20))
        .await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_eq!(app.count_messages("lost and found").await, 1);
    assert!(server.fetched().len() >= 2, "{:?}", server.fetched());
    Scaled {
        app,
        stop_worker,
        worker,
    }
    .stop()
    .await;
}

async fn tasks_left_undispatched_are_pushed_after_a_restart(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    let Some(app) = app_with_faktory(backend, &server).await else {
        return;
    };
    let room = app.create_room(1, "r", &[]).await;
    let db = app.db.clone();
    let (mut config, backend, dir) = app.stop().await;
    let orphan = orphan_task(&db, group_send(1, room, "from the outbox")).await;
    // Written as dispatched, but the process died before pushing it.
    let handed_off = orphan_task(&db, group_send(1, room, "never pushed")).await;
    tasks::mark_dispatched(&db, &[handed_off]).await.unwrap();
    config.job_start_timeout_secs = 1;
    let app = start(config, backend, dir).await;
    let (stop_worker, worker) = start_worker(&app);
    for id in [orphan, handed_off] {
        let done = app
            .finished_task_within(&id.to_string(), Duration::from_secs(20))
            .await;
        assert_eq!(done["state"], "SUCCESS", "{done}");
    }
    assert_eq!(app.count_messages("from the outbox").await, 1);
    assert_eq!(app.count_messages("never pushed").await, 1);
    Scaled {
        app,
        stop_worker,
        worker,
    }
    .stop()
    .await;
}

async fn infrastructure_failures_are_retried_by_faktory(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    let Some(scaled) = scaled(backend, &server).await else {
        return;
    };
    let app = &scaled.app;
    let room = app.create_room(3, "r", &[]).await;
    break_message_inserts(&app.db).await;
    let task = app.send_group(3, room, "after the storm").await;
    assert!(
        server
            .wait_until(Duration::from_secs(10), |s| !s.failed().is_empty())
            .await,
        "the worker reports the failure to Faktory"
    );
    heal(&app.db).await;
    let done = app.finished_task(&task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert!(done["attempts"].as_i64().unwrap() >= 2);
    let row = tasks::get(&app.db, task.parse().unwrap()).await.unwrap();
    assert!(row.attempts >= 2);
    assert_eq!(app.count_messages("after the storm").await, 1);
    scaled.stop().await;
}

async fn a_wrong_password_is_a_clear_start_up_error(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    let Some((url, _dir)) = test_database(backend).await else {
        return;
    };
    let mut config = test_config(url);
    config.faktory_url = Some(server.url_with_password("wrong"));
    let error = match Application::build(config.clone()).await {
        Ok(_) => panic!("must not start with a wrong Faktory password"),
        Err(error) => error,
    };
    assert!(
        matches!(error, StartupError::Faktory(FaktoryError::Authentication)),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.starts_with("FAKTORY_URL"), "{text}");
    assert!(text.contains("password"), "{text}");

    let faktory = FaktoryConfig::from_url(
        config.faktory_url.as_deref().unwrap(),
        "chat",
        Duration::from_secs(30),
        3,
    )
    .unwrap();
    let (db, _) = chat_gateway::db::connect(&config).await.unwrap();
    let ctx = JobContext {
        events: chat_gateway::app::event_bus(&config, None, &db),
        db,
    };
    let (_stop, stopping) = watch::channel(false);
    let result = run_worker(faktory, ctx, 1, stopping, Duration::from_secs(1)).await;
    assert!(
        matches!(result, Err(FaktoryError::Authentication)),
        "{result:?}"
    );
}

/// Faktory dies mid-way through 300 sends and comes back empty (its data
/// lost, as after a kill -9 without persistence): every send still ends in
/// SUCCESS, each message is stored once, and the worker lives on.
async fn a_broker_restarted_empty_loses_no_send(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    let port = server.port();
    let Some((url, dir)) = test_database(backend).await else {
        return;
    };
    let mut config = test_config(url);
    faktory_settings(&mut config, &server);
    config.job_start_timeout_secs = 3;
    let app = start(config, backend, dir).await;
    let (stop_worker, worker) = start_worker(&app);

    let send = |i: usize| {
        let client = app.client.clone();
        let from = 1 + (i % 14) as i64;
        let url = app.url(&format!("/chat/user/{}/", from + 1));
        async move {
            let response = client
                .post(url)
                .json(&serde_json::json!({"from": from, "text": format!("restart {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["data"].as_str().unwrap().to_owned()
        }
    };
    let mut tasks = Vec::new();
    for i in 0..150 {
        tasks.push(send(i).await);
    }
    // The broker dies with whatever it held, and a new, empty one takes
    // its place two seconds later; sends go on meanwhile.
    server.stop().await;
    for i in 150..225 {
        tasks.push(send(i).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fresh = FaktoryServer::start_on(port, Some(PASSWORD)).await;
    for i in 225..300 {
        tasks.push(send(i).await);
    }

    for task in &tasks {
        let done = app
            .finished_task_within(task, Duration::from_secs(60))
            .await;
        assert_eq!(done["state"], "SUCCESS", "{done}");
    }
    for i in 0..300 {
        assert_eq!(
            app.count_messages(&format!("restart {i}")).await,
            1,
            "restart {i}"
        );
    }
    assert!(!worker.is_finished(), "the worker must survive the broker");
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["background"], "ok", "{ready}");
    assert!(!fresh.acked().is_empty());
    Scaled {
        app,
        stop_worker,
        worker,
    }
    .stop()
    .await;
}

/// The `worker` command, a process of its own, lives through two broker
/// deaths (the second one coming back empty) and keeps running jobs.
async fn a_worker_process_survives_broker_restarts(backend: Backend) {
    let server = FaktoryServer::start(Some(PASSWORD)).await;
    let port = server.port();
    let Some((url, dir)) = test_database(backend).await else {
        return;
    };
    let mut config = test_config(url);
    faktory_settings(&mut config, &server);
    config.job_start_timeout_secs = 3;
    let app = start(config, backend, dir).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .arg("worker")
        .env("DATABASE_URL", &app.config.database_url)
        .env("FAKTORY_URL", server.url())
        .env("JOB_RESERVE_SECS", "2")
        .env("RUST_LOG", "warn")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("the worker starts");

    let round = |label: &'static str| {
        let app = &app;
        async move {
            let mut tasks = Vec::new();
            for i in 0..20 {
                tasks.push(app.send_direct(3, 4, &format!("{label} {i}")).await);
            }
            for task in tasks {
                let done = app
                    .finished_task_within(&task, Duration::from_secs(60))
                    .await;
                assert_eq!(done["state"], "SUCCESS", "{done}");
            }
        }
    };
    round("before").await;
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;
    round("restarted").await;
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _fresh = FaktoryServer::start_on(port, Some(PASSWORD)).await;
    round("empty").await;

    let alive = worker.try_wait().unwrap().is_none();
    let _ = worker.kill();
    let _ = worker.wait();
    let output = std::fs::read_to_string(log.path()).unwrap();
    assert!(alive, "the worker process died: {output}");
    assert!(!output.contains("panicked"), "{output}");
    for label in ["before", "restarted", "empty"] {
        for i in 0..20 {
            assert_eq!(app.count_messages(&format!("{label} {i}")).await, 1);
        }
    }
    app.stop().await;
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    sends_run_through_faktory,
    faktory_down_at_send_time,
    a_job_delivered_twice_stores_once,
    a_job_held_by_a_dead_worker_is_delivered_again,
    tasks_left_undispatched_are_pushed_after_a_restart,
    infrastructure_failures_are_retried_by_faktory,
    a_wrong_password_is_a_clear_start_up_error,
    a_broker_restarted_empty_loses_no_send,
    a_worker_process_survives_broker_restarts,
);
