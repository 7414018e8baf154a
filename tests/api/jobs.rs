//! Sends through the embedded (in-process) job queue: task states, domain
//! failures, restart recovery, duplicate delivery, retries.

use chat_gateway::{
    domain::tasks,
    jobs::{
        Envelope, Job, PAYLOAD_VERSION,
        worker::{JobContext, execute},
    },
};
use entity::task;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, error_code, start};

async fn direct_messages_share_one_room_both_ways(app: TestApp) {
    let task = app.send_direct(2, 3, "hey man").await;
    let done = app.finished_task(&task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_eq!(done["kind"], "send_direct_message");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["result"]["text"], "hey man");
    assert_eq!(done["result"]["sender"]["username"], "user_2");
    assert_eq!(done["result"]["room"]["name"], "user_2 - user_3");

    let reply = app.finished_task(&app.send_direct(3, 2, "yo").await).await;
    assert_eq!(reply["state"], "SUCCESS");
    assert_eq!(reply["result"]["room"]["id"], done["result"]["room"]["id"]);
}

async fn group_sends_need_membership(app: TestApp) {
    let room = app.create_room(9, "family", &["user_7"]).await;
    let ok = app
        .finished_task(&app.send_group(7, room, "hi fam").await)
        .await;
    assert_eq!(ok["state"], "SUCCESS");
    assert_eq!(ok["result"]["room"]["name"], "family");

    let refused = app
        .finished_task(&app.send_group(4, room, "let me in").await)
        .await;
    assert_eq!(refused["state"], "FAILURE");
    assert_eq!(refused["attempts"], 1, "domain failures are not retried");
    assert_eq!(refused["error"]["kind"], "PermissionDenied");
    assert_eq!(
        refused["error"]["message"],
        "User doesn't belong to chatroom"
    );
    assert_eq!(refused["result"], serde_json::Value::Null);
    assert_eq!(app.count_messages("let me in").await, 0);
}

async fn invalid_sends_fail_without_retry(app: TestApp) {
    let room = app.create_room(1, "r", &[]).await;
    // A text that can never be stored is refused at once, with no task.
    for text in ["x".repeat(1025), String::new()] {
        let body = app
            .graphql_as(
                Some(1),
                "mutation($room: ID!, $text: String!) {
                    sendGroupMessage(roomId: $room, text: $text) { id } }",
                json!({"room": room, "text": text}),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["fields"]["text"][0],
            "text must be 1 to 1024 characters"
        );
    }
    let count = entity::task::Entity::find().count(&app.db).await.unwrap();
    assert_eq!(count, 0, "no task for a refused send");
    // What only the worker can know fails the task.
    let cases = [
        (app.send_group(1, 9999, "anyone?").await, "DoesNotExist"),
        (app.send_direct(1, 9999, "hello?").await, "DoesNotExist"),
        (app.send_direct(1, 1, "me, myself").await, "ValidationError"),
    ];
    for (task, kind) in cases {
        let done = app.finished_task(&task).await;
        assert_eq!(done["state"], "FAILURE", "{done}");
        assert_eq!(done["error"]["kind"], kind, "{done}");
        assert_eq!(done["attempts"], 1);
    }
    // A bad text that reached the outbox anyway (an older build wrote it)
    // still fails its task cleanly in the worker.
    let old = orphan_task(&app.db, group_send(1, room, "")).await;
    let done = app.finished_task(&old.to_string()).await;
    assert_eq!(done["error"]["kind"], "ValidationError", "{done}");
    // Exactly 1024 characters is fine.
    let done = app
        .finished_task(&app.send_group(1, room, &"é".repeat(1024)).await)
        .await;
    assert_eq!(done["state"], "SUCCESS");
}

async fn sends_need_a_viewer(app: TestApp) {
    let body = app
        .graphql(
            "mutation { sendDirectMessage(toUserId: 2, text: \"hi\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    let body = app
        .graphql_as(
            Some(1),
            "mutation { sendGroupMessage(roomId: \"abc\", text: \"hi\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

/// A group send of `text` from `from` into `room_id`, as a job.
pub fn group_send(from: i64, room_id: i64, text: &str) -> Job {
    Job::SendGroupMessage {
        from,
        room_id,
        text: text.into(),
        reply_to: None,
    }
}

/// Write a task the way `Jobs::submit` does, without dispatching it: what a
/// process that crashed right after answering leaves behind.
pub async fn orphan_task(db: &impl ConnectionTrait, job: Job) -> Uuid {
    let id = Uuid::now_v7();
    let envelope = Envelope {
        v: PAYLOAD_VERSION,
        task_id: id,
        job,
    };
    let kind = envelope.job.kind();
    tasks::create_with_id(db, id, kind, serde_json::to_value(&envelope).unwrap())
        .await
        .unwrap();
    id
}

async fn unfinished_tasks_run_after_a_restart(app: TestApp) {
    let room = app.create_room(5, "r", &["user_6"]).await;
    let db = app.db.clone();
    let (config, backend, dir) = app.stop().await; // the process stops...

    // ...leaving one task never queued, one written as dispatched that its
    // hand-off held when the process died, and one a worker had started.
    let queued = orphan_task(&db, group_send(6, room, "survived")).await;
    let started = orphan_task(
        &db,
        Job::SendDirectMessage {
            from: 5,
            to: 6,
            text: "half done".into(),
            reply_to: None,
        },
    )
    .await;
    tasks::mark_dispatched(&db, &[started]).await.unwrap();
    assert!(tasks::start(&db, started).await.unwrap());
    let handed_off = orphan_task(&db, group_send(5, room, "in the hand-off")).await;
    tasks::mark_dispatched(&db, &[handed_off]).await.unwrap();

    let app = start(config, backend, dir).await;
    for id in [queued, started, handed_off] {
        let done = app.finished_task(&id.to_string()).await;
        assert_eq!(done["state"], "SUCCESS", "{done}");
    }
    assert_eq!(app.count_messages("survived").await, 1);
    assert_eq!(app.count_messages("half done").await, 1);
    assert_eq!(app.count_messages("in the hand-off").await, 1);
}

async fn a_job_delivered_twice_stores_once(app: TestApp) {
    let room = app.create_room(3, "r", &[]).await;
    let id = orphan_task(&app.db, group_send(3, room, "only once")).await;
    // Stop the outbox from picking it up on its own.
    tasks::mark_dispatched(&app.db, &[id]).await.unwrap();
    let envelope = Envelope::from_task(&tasks::get(&app.db, id).await.unwrap()).unwrap();
    let ctx = JobContext {
        db: app.db.clone(),
        events: app.events.clone(),
    };
    // Two deliveries at once, then a late third one.
    let (a, b) = tokio::join!(
        execute(&ctx, &envelope, false),
        execute(&ctx, &envelope, false)
    );
    for outcome in [a, b] {
        assert!(
            !matches!(outcome, chat_gateway::jobs::worker::Outcome::Retry(_)),
            "{outcome:?}"
        );
    }
    execute(&ctx, &envelope, false).await;
    assert_eq!(app.count_messages("only once").await, 1);
    let task = tasks::get(&app.db, id).await.unwrap();
    assert_eq!(task.state.as_str(), "SUCCESS");
    let message = tasks::result_message_id(&task).unwrap();
    let stored = chat_gateway::domain::messages::stored_by_task(&app.db, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id, message);
}

/// Make inserts into `messages` fail until [`heal`] is called.
pub async fn break_message_inserts(db: &impl ConnectionTrait) {
    let statements: &[&str] = match db.get_database_backend() {
        DbBackend::Postgres => &[
            "CREATE FUNCTION refuse_insert() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'injected failure'; END; $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_insert BEFORE INSERT ON messages \
             FOR EACH ROW EXECUTE FUNCTION refuse_insert()",
        ],
        _ => &["CREATE TRIGGER refuse_insert BEFORE INSERT ON messages \
                BEGIN SELECT RAISE(ABORT, 'injected failure'); END"],
    };
    for sql in statements {
        db.execute_unprepared(sql).await.unwrap();
    }
}

pub async fn heal(db: &impl ConnectionTrait) {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => "DROP TRIGGER refuse_insert ON messages",
        _ => "DROP TRIGGER refuse_insert",
    };
    db.execute_unprepared(sql).await.unwrap();
}

async fn infrastructure_failures_are_retried(app: TestApp) {
    let room = app.create_room(2, "r", &[]).await;
    break_message_inserts(&app.db).await;
    let task = app.send_group(2, room, "eventually").await;
    let id: Uuid = task.parse().unwrap();
    // Wait until it has failed at least twice.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let row = tasks::get(&app.db, id).await.unwrap();
        if row.attempts >= 2 {
            assert!(!row.state.is_finished(), "still retrying: {row:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retry happened");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    heal(&app.db).await;
    let done = app.finished_task(&task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    // At least one failed attempt came before the one that stored it.
    assert!(done["attempts"].as_i64().unwrap() >= 2, "{done}");
    assert_eq!(app.count_messages("eventually").await, 1);
}

async fn retries_give_up_after_the_last_attempt(app: TestApp) {
    let room = app.create_room(2, "r", &[]).await;
    break_message_inserts(&app.db).await;
    let done = app
        .finished_task(&app.send_group(2, room, "never").await)
        .await;
    assert_eq!(done["state"], "FAILURE");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["error"]["kind"], "InternalError");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(!message.contains("injected"), "no internals: {message}");
    heal(&app.db).await;
}

async fn finished_tasks_are_purged_after_retention(app: TestApp) {
    let room = app.create_room(1, "r", &[]).await;
    let old = app.send_group(1, room, "old").await;
    app.finished_task(&old).await;
    let recent = app.send_group(1, room, "recent").await;
    app.finished_task(&recent).await;
    let pending = orphan_task(
        &app.db,
        Job::MarkSeen {
            user_id: 1,
            room_id: room,
            up_to: None,
        },
    )
    .await;
    {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let long_ago = chat_gateway::domain::now() - chrono::Duration::days(30);
        entity::task::Entity::update_many()
            .col_expr(entity::task::Column::FinishedAt, Expr::value(long_ago))
            .filter(entity::task::Column::Id.eq(old.parse::<Uuid>().unwrap()))
            .exec(&app.db)
            .await
            .unwrap();
    }
    let purged = tasks::purge_finished(
        &app.db,
        chat_gateway::domain::now() - chrono::Duration::hours(24),
    )
    .await
    .unwrap();
    assert_eq!(purged, 1);
    assert!(tasks::get(&app.db, old.parse().unwrap()).await.is_err());
    assert!(tasks::get(&app.db, recent.parse().unwrap()).await.is_ok());
    assert!(
        tasks::get(&app.db, pending).await.is_ok(),
        "unfinished tasks stay"
    );
    // The message outlives its task.
    assert_eq!(app.count_messages("old").await, 1);
}

/// A send is written already marked dispatched (the writer had room in the
/// dispatcher's hand-off), and pushing it wrote nothing more.
async fn sends_are_written_as_dispatched(app: TestApp) {
    let task = app.send_direct(2, 3, "marked at once").await;
    let done = app.finished_task(&task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    let row = tasks::get(&app.db, task.parse().unwrap()).await.unwrap();
    assert_eq!(row.dispatched_at, Some(row.created_at));
}

/// Only the writer's own mark on a task that never started is taken back
/// after a failed push: a task pushed again since, running, or waiting for
/// its retry keeps its mark (the sweep would push it a further time).
async fn a_failed_push_takes_back_only_the_writers_mark(app: TestApp) {
    let room = app.create_room(5, "r", &[]).await;
    let job = || group_send(5, room, "held");
    let (mine, pushed_again, running, retrying) = (
        orphan_task(&app.db, job()).await,
        orphan_task(&app.db, job()).await,
        orphan_task(&app.db, job()).await,
        orphan_task(&app.db, job()).await,
    );
    task::Entity::update_many()
        .col_expr(
            task::Column::DispatchedAt,
            Expr::col(task::Column::CreatedAt),
        )
        .filter(task::Column::Id.is_in([mine, running, retrying]))
        .exec(&app.db)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    tasks::mark_dispatched(&app.db, &[pushed_again])
        .await
        .unwrap();
    assert!(tasks::start(&app.db, running).await.unwrap());
    assert!(tasks::start(&app.db, retrying).await.unwrap());
    tasks::release_for_retry(&app.db, retrying).await.unwrap();

    tasks::unmark_dispatched(&app.db, &[mine, pushed_again, running, retrying])
        .await
        .unwrap();
    let mark = |id| {
        let db = app.db.clone();
        async move { tasks::get(&db, id).await.unwrap().dispatched_at }
    };
    assert_eq!(mark(mine).await, None);
    assert!(mark(pushed_again).await.is_some());
    assert!(mark(running).await.is_some());
    assert!(mark(retrying).await.is_some());
}

crate::scenarios!(
    config = |c: &mut chat_gateway::config::Config| c.outbox_sweep_ms = 200;
    sends_are_written_as_dispatched,
    a_failed_push_takes_back_only_the_writers_mark,
    finished_tasks_are_purged_after_retention,
    direct_messages_share_one_room_both_ways,
    group_sends_need_membership,
    invalid_sends_fail_without_retry,
    sends_need_a_viewer,
    unfinished_tasks_run_after_a_restart,
    a_job_delivered_twice_stores_once,
    infrastructure_failures_are_retried,
);

/// A burst of sends through a hand-off and a queue of one place each: most
/// tasks find no room and are written undispatched; the sweep pushes them,
/// and every send is stored once.
async fn a_full_hand_off_loses_no_send(app: TestApp) {
    let room = app.create_room(7, "r", &[]).await;
    let sends = (0..40).map(|n| {
        let app = &app;
        async move { app.send_group(7, room, &format!("burst {n}")).await }
    });
    let ids = futures::future::join_all(sends).await;
    for id in &ids {
        let done = app
            .finished_task_within(id, std::time::Duration::from_secs(30))
            .await;
        assert_eq!(done["state"], "SUCCESS", "{done}");
    }
    for n in 0..40 {
        assert_eq!(app.count_messages(&format!("burst {n}")).await, 1);
    }
}

mod small_hand_off {
    use super::*;

    crate::scenarios!(
        config = |c: &mut chat_gateway::config::Config| {
            c.job_queue_capacity = 1;
            c.outbox_sweep_ms = 200;
        };
        a_full_hand_off_loses_no_send,
    );
}

mod few_attempts {
    use super::*;

    crate::scenarios!(
        config = |c: &mut chat_gateway::config::Config| c.job_max_attempts = 3;
        retries_give_up_after_the_last_attempt,
    );
}
