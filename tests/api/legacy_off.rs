//! The legacy REST paths with legacy identity turned off: a bearer token is
//! required, and `user_id` / `from` must be the token's user.

use chat_gateway::domain::users::SEED_PASSWORD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_paths_need_the_tokens_own_user() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.legacy_identity = false)
        .await
        .unwrap();
    let token = app.login("user_2", SEED_PASSWORD).await;

    // No token: 401 envelope.
    let response = app
        .client
        .get(app.url("/chat/chatroom/?user_id=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert!(body["msg"].as_str().unwrap().contains("bearer"));

    // Someone else's user_id: 403.
    let response = app
        .client
        .get(app.url("/chat/chatroom/?user_id=3"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Their own: as the contract says.
    let response = app
        .client
        .get(app.url("/chat/chatroom/?user_id=2"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Sends: `from` must be the token's user.
    let response = app
        .client
        .post(app.url("/chat/user/3/"))
        .bearer_auth(&token)
        .json(&json!({"from": 4, "text": "spoofed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .client
        .post(app.url("/chat/user/3/"))
        .bearer_auth(&token)
        .json(&json!({"from": 2, "text": "genuine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let task = body["data"].as_str().unwrap().to_owned();
    assert_eq!(app.finished_task(&task).await["state"], "SUCCESS");

    // Account changes: only the owner.
    let response = app
        .client
        .patch(app.url("/users/3/"))
        .bearer_auth(&token)
        .json(&json!({"first_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .client
        .patch(app.url("/users/2/"))
        .json(&json!({"first_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .patch(app.url("/users/2/"))
        .bearer_auth(&token)
        .json(&json!({"first_name": "Two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Reading stays open.
    let response = app.client.get(app.url("/users/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// With legacy identity off, creating a room needs a token, and a task is
/// readable by its sender's token only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_tasks_need_the_right_token() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.legacy_identity = false)
        .await
        .unwrap();
    let response = app
        .client
        .post(app.url("/chat/chatroom/"))
        .json(&json!({"room_name": "anonymous", "room_member": [{"username": "user_5"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let two = app.login("user_2", SEED_PASSWORD).await;
    let three = app.login("user_3", SEED_PASSWORD).await;
    let response = app
        .client
        .post(app.url("/chat/chatroom/"))
        .bearer_auth(&two)
        .json(&json!({"room_name": "signed", "room_member": [{"username": "user_5"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let response = app
        .client
        .post(app.url("/chat/user/3/"))
        .bearer_auth(&two)
        .json(&json!({"from": 2, "text": "for three only"}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let task = body["data"].as_str().unwrap().to_owned();
    assert_eq!(app.finished_task(&task).await["state"], "SUCCESS");
    let path = app.url(&format!("/chat/task_state/{task}"));
    let anonymous = app.client.get(&path).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let other = app
        .client
        .get(&path)
        .bearer_auth(&three)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    assert!(!other.text().await.unwrap().contains("for three only"));
    let own: Value = app
        .client
        .get(&path)
        .bearer_auth(&two)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["state"], "SUCCESS");
    assert_eq!(own["result"]["text"], "for three only");
}
