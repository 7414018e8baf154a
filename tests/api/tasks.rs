//! `task(id)`: state, result and error of background tasks.

use entity::task::{self, TaskState};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, error_code};

const TASK: &str = "query($id: ID!) { task(id: $id) {
    id kind state attempts result { text sender { username } } error { kind message } } }";

async fn insert_task(
    app: &TestApp,
    state: TaskState,
    result: Option<Value>,
    error: Option<Value>,
) -> Uuid {
    let id = Uuid::new_v4();
    let now = chat_gateway::domain::now();
    task::ActiveModel {
        id: Set(id),
        kind: Set("send_group_message".into()),
        args: Set(json!({"v": 1, "from": 1})),
        state: Set(state),
        result: Set(result),
        error: Set(error),
        attempts: Set(1),
        dispatched_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        finished_at: Set(None),
    }
    .insert(&app.db)
    .await
    .unwrap();
    id
}

async fn task_reports_state_result_and_error(app: TestApp) {
    let room = app.create_room(1, "r", &[]).await;
    let message = app.store_message(room, 1, "stored").await;

    let done = insert_task(
        &app,
        TaskState::Success,
        Some(json!({"message_id": message})),
        None,
    )
    .await;
    let data = app.ok_as(Some(1), TASK, json!({"id": done})).await;
    assert_eq!(data["task"]["state"], "SUCCESS");
    assert_eq!(data["task"]["id"], done.to_string());
    assert_eq!(data["task"]["result"]["text"], "stored");
    assert_eq!(data["task"]["result"]["sender"]["username"], "user_1");
    assert_eq!(data["task"]["error"], Value::Null);

    let failed = insert_task(
        &app,
        TaskState::Failure,
        None,
        Some(json!({"exc_type": "PermissionDenied", "exc_message": ["User doesn't belong to chatroom"]})),
    )
    .await;
    let data = app.ok_as(Some(1), TASK, json!({"id": failed})).await;
    assert_eq!(data["task"]["state"], "FAILURE");
    assert_eq!(data["task"]["result"], Value::Null);
    assert_eq!(data["task"]["error"]["kind"], "PermissionDenied");
    assert_eq!(
        data["task"]["error"]["message"],
        "User doesn't belong to chatroom"
    );

    let pending = insert_task(&app, TaskState::Pending, None, None).await;
    let data = app.ok_as(Some(1), TASK, json!({"id": pending})).await;
    assert_eq!(data["task"]["state"], "PENDING");
    assert_eq!(data["task"]["result"], Value::Null);
}

async fn unknown_and_malformed_task_ids(app: TestApp) {
    let body = app
        .graphql_as(Some(1), TASK, json!({"id": Uuid::new_v4()}))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app
        .graphql_as(Some(1), TASK, json!({"id": "not-a-uuid"}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

/// A task is its sender's: anyone else is told it does not exist, and an
/// anonymous request must sign in. Its message never shows.
async fn tasks_are_for_their_sender_only(app: TestApp) {
    let task = app.send_direct(2, 3, "between two and three").await;
    let done = app.finished_task(&task).await;
    assert_eq!(done["state"], "SUCCESS");
    let body = app.graphql(TASK, json!({"id": task})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    for stranger in [1, 3] {
        let body = app
            .graphql_as(Some(stranger), TASK, json!({"id": task}))
            .await;
        assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
        assert!(!body.to_string().contains("between two and three"));
    }
    let data = app.ok_as(Some(2), TASK, json!({"id": task})).await;
    assert_eq!(data["task"]["result"]["text"], "between two and three");
}

crate::scenarios!(
    task_reports_state_result_and_error,
    unknown_and_malformed_task_ids,
    tasks_are_for_their_sender_only,
);
