//! The legacy REST contract (`legacy-rest.md`), black-box over HTTP, the way
//! the old curl scripts call it: `/users/` (plain objects, field errors, the
//! user-list cache, also across two instances), chat rooms (envelopes, join,
//! leave), asynchronous sends and `task_state`, room history and unseen
//! messages with their background "seen" marks, identity by `user_id`,
//! trailing slashes, form bodies, and error envelopes without internals.

use std::time::Duration;

use chat_gateway::domain::users::SEED_PASSWORD;
use reqwest::{Method, StatusCode};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{TestApp, start};

// ---------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const EMPTY_BODY: &str = "Body is empty or wrong format";

async fn exchange(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("response body");
    (status, text)
}

/// The body as JSON; an empty body is `null`.
fn parse(status: StatusCode, text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{status}: the body is not JSON ({e}): {text}"))
}

fn json_of(answer: (StatusCode, String)) -> (StatusCode, Value) {
    let (status, text) = answer;
    let body = parse(status, &text);
    (status, body)
}

async fn call_text(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(body);
    }
    exchange(request).await
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    json_of(call_text(app, method, path, body).await)
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    call(app, Method::GET, path, None).await
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    call(app, Method::POST, path, Some(&body)).await
}

async fn put(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    call(app, Method::PUT, path, Some(&body)).await
}

async fn patch(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    call(app, Method::PATCH, path, Some(&body)).await
}

/// A PUT without a body, as `curl -X PUT` sends it (joining a room).
async fn put_empty(app: &TestApp, path: &str) -> (StatusCode, Value) {
    call(app, Method::PUT, path, None).await
}

/// DELETE; the raw body, since a success (204) has none.
async fn delete(app: &TestApp, path: &str) -> (StatusCode, String) {
    exchange(app.client.delete(app.url(path))).await
}

/// POST a body verbatim, with the given content type (or none at all).
async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = app.client.post(app.url(path)).body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    json_of(exchange(request).await)
}

/// POST a form-encoded body (`curl -d a=b`); `form` is already encoded.
async fn post_form(app: &TestApp, path: &str, form: &str) -> (StatusCode, Value) {
    post_raw(app, path, Some(FORM), form).await
}

// ---------------------------------------------------------------------------
// Shape assertions
// ---------------------------------------------------------------------------

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[track_caller]
fn assert_keys(value: &Value, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(keys(value), expected, "keys of {value}");
}

/// A chat success envelope, exactly `{"status": 200, "message":
/// "HTTP_200_OK", "data": ...}`; returns `data`.
#[track_caller]
fn data(answer: (StatusCode, Value)) -> Value {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_keys(&body, &["status", "message", "data"]);
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(body["message"], "HTTP_200_OK", "{body}");
    body["data"].clone()
}

/// An error envelope, exactly `{"status": code, "msg": "..."}` with the same
/// HTTP status; returns the message.
#[track_caller]
fn refused(answer: (StatusCode, Value), code: u16) -> String {
    let (status, body) = answer;
    assert_eq!(status.as_u16(), code, "{body}");
    assert_keys(&body, &["status", "msg"]);
    assert_eq!(body["status"], code, "{body}");
    let msg = body["msg"]
        .as_str()
        .unwrap_or_else(|| panic!("msg is a string: {body}"));
    assert!(!msg.trim().is_empty(), "{body}");
    assert_no_internals(msg);
    msg.to_owned()
}

#[track_caller]
fn refused_with(answer: (StatusCode, Value), code: u16, msg: &str) {
    assert_eq!(refused(answer, code), msg);
}

#[track_caller]
fn assert_no_internals(text: &str) {
    let lower = text.to_lowercase();
    for leak in [
        "select ", "insert ", "sqlx", "sqlite", "postgres", "dberr", "panicked", "src/",
    ] {
        assert!(!lower.contains(leak), "internal detail {leak:?} in {text}");
    }
}

/// `9` stands for a digit.
fn has_shape(value: &str, shape: &str) -> bool {
    value.len() == shape.len()
        && value.bytes().zip(shape.bytes()).all(|(c, s)| {
            if s == b'9' {
                c.is_ascii_digit()
            } else {
                c == s
            }
        })
}

const ISO_MICROS: &str = "9999-99-99T99:99:99.999999Z";
const LAST_LOGIN: &str = "9999-99-99 99:99:99";

/// An ISO 8601 UTC timestamp with microseconds and `Z`.
#[track_caller]
fn timestamp(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp string: {value}"));
    assert!(
        has_shape(text, ISO_MICROS),
        "ISO 8601 in UTC with microseconds and Z: {text}"
    );
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&chrono::Utc)
}

#[track_caller]
fn assert_recent(value: &Value) {
    let at = timestamp(value);
    let age = chrono::Utc::now() - at;
    assert!(
        age < chrono::Duration::minutes(10) && age > chrono::Duration::minutes(-1),
        "{at} is not about now"
    );
}

const USER_KEYS: &[&str] = &[
    "id",
    "username",
    "first_name",
    "last_name",
    "email",
    "is_active",
    "is_staff",
    "is_superuser",
    "last_login",
    "date_joined",
    "profile",
];
const PROFILE_KEYS: &[&str] = &["id", "user", "status", "status_msg"];

/// No key mentions a password, and no value is a password hash.
fn assert_no_password(value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                assert!(
                    !key.to_lowercase().contains("password"),
                    "a password field: {key}"
                );
                assert_no_password(inner);
            }
        }
        Value::Array(items) => {
            for item in items {
                assert_no_password(item);
            }
        }
        Value::String(text) => assert!(!text.contains("$argon2"), "a password hash: {text}"),
        _ => {}
    }
}

/// Exactly the user object of the contract.
#[track_caller]
fn assert_user(user: &Value) {
    assert_keys(user, USER_KEYS);
    let profile = &user["profile"];
    assert_keys(profile, PROFILE_KEYS);
    let id = user["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("a numeric id: {user}"));
    assert!(id > 0, "{user}");
    assert_eq!(profile["user"], id, "{user}");
    assert!(profile["id"].as_i64().is_some_and(|p| p > 0), "{user}");
    for field in ["username", "first_name", "last_name", "email"] {
        assert!(user[field].is_string(), "{field}: {user}");
    }
    for flag in ["is_active", "is_staff", "is_superuser"] {
        assert!(user[flag].is_boolean(), "{flag}: {user}");
    }
    assert!(
        matches!(
            profile["status"].as_str(),
            Some("Online" | "Busy" | "Offline")
        ),
        "{user}"
    );
    assert!(
        profile["status_msg"].is_null() || profile["status_msg"].is_string(),
        "{user}"
    );
    timestamp(&user["date_joined"]);
    match &user["last_login"] {
        Value::Null => {}
        Value::String(at) => assert!(has_shape(at, LAST_LOGIN), "last_login: {at}"),
        other => panic!("last_login: {other}"),
    }
    assert_no_password(user);
}

fn usernames(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

fn len(list: &Value) -> usize {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .len()
}

#[track_caller]
fn member_names(room: &Value) -> Vec<String> {
    room["room_member"]
        .as_array()
        .unwrap_or_else(|| panic!("room_member is a list: {room}"))
        .iter()
        .map(|member| {
            assert_keys(member, &["username"]);
            member["username"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[track_caller]
fn assert_room_fields(room: &Value, id: i64, name: &str, members: &[&str]) {
    assert_eq!(room["id"], id, "{room}");
    assert_eq!(room["room_name"], name, "{room}");
    assert_eq!(member_names(room), members, "{room}");
}

/// Exactly `{"id", "room_name", "room_member": [{"username"}, ...]}`.
#[track_caller]
fn assert_room(room: &Value, id: i64, name: &str, members: &[&str]) {
    assert_keys(room, &["id", "room_name", "room_member"]);
    assert_room_fields(room, id, name, members);
}

/// A room object plus `messages` (history and unseen lists).
#[track_caller]
fn assert_room_with_messages(room: &Value, id: i64, name: &str, members: &[&str]) {
    assert_keys(room, &["id", "room_name", "room_member", "messages"]);
    assert_room_fields(room, id, name, members);
    assert!(room["messages"].is_array(), "{room}");
}

/// `msg_from`: `{"id", "username", "chat_room": [{"id", "date_joined",
/// "user": {"username"}}]}`.
#[track_caller]
fn assert_sender(from: &Value, id: i64, username: &str) {
    assert_keys(from, &["id", "username", "chat_room"]);
    assert_eq!(from["id"], id, "{from}");
    assert_eq!(from["username"], username, "{from}");
    let memberships = from["chat_room"]
        .as_array()
        .unwrap_or_else(|| panic!("chat_room is a list: {from}"));
    for membership in memberships {
        assert_keys(membership, &["id", "date_joined", "user"]);
        assert!(membership["id"].as_i64().is_some(), "{from}");
        timestamp(&membership["date_joined"]);
        assert_eq!(membership["user"], json!({"username": username}), "{from}");
    }
}

/// A message in a room history or unseen list: `room` is the room id.
#[track_caller]
fn assert_message(message: &Value, room: i64, text: &str, sender: Option<(i64, &str)>) {
    assert_keys(message, &["id", "text", "sent_at", "room", "msg_from"]);
    assert!(message["id"].as_i64().is_some_and(|id| id > 0), "{message}");
    assert_eq!(message["text"], text, "{message}");
    assert_eq!(message["room"], room, "{message}");
    timestamp(&message["sent_at"]);
    match sender {
        Some((id, username)) => assert_sender(&message["msg_from"], id, username),
        None => assert!(message["msg_from"].is_null(), "{message}"),
    }
}

/// The message object of a task result: `room` is a whole room object.
#[track_caller]
fn assert_task_message(message: &Value, text: &str, sender: (i64, &str)) {
    assert_keys(message, &["id", "text", "sent_at", "room", "msg_from"]);
    assert!(message["id"].as_i64().is_some_and(|id| id > 0), "{message}");
    assert_eq!(message["text"], text, "{message}");
    assert_recent(&message["sent_at"]);
    assert_keys(&message["room"], &["id", "room_name", "room_member"]);
    assert_sender(&message["msg_from"], sender.0, sender.1);
}

fn texts(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap_or_else(|| panic!("a list of messages: {messages}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

fn by_id(list: Value) -> Vec<Value> {
    let mut items = match list {
        Value::Array(items) => items,
        other => panic!("expected a list: {other}"),
    };
    items.sort_by_key(|item| {
        item["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("numeric id: {item}"))
    });
    items
}

#[track_caller]
fn room_in(rooms: &[Value], id: i64) -> &Value {
    rooms
        .iter()
        .find(|room| room["id"] == id)
        .unwrap_or_else(|| panic!("room {id} missing from {rooms:?}"))
}

// ---------------------------------------------------------------------------
// Domain helpers over REST
// ---------------------------------------------------------------------------

/// `GET /users/<query>`: a plain array of user objects, ordered by id.
async fn list_users(app: &TestApp, query: &str) -> Value {
    let (status, list) = get(app, &format!("/users/{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {list}");
    let users = list
        .as_array()
        .unwrap_or_else(|| panic!("a plain JSON array: {list}"));
    let mut previous = 0;
    for user in users {
        assert_user(user);
        let id = user["id"].as_i64().unwrap();
        assert!(id > previous, "ordered by id: {list}");
        previous = id;
    }
    list
}

/// `POST /users/` that must succeed: 201 and the user object.
async fn create_user(app: &TestApp, body: Value) -> Value {
    let (status, user) = post(app, "/users/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_user(&user);
    user
}

/// A send answer: the envelope with a UUID task id as `data`.
#[track_caller]
fn task_id(answer: (StatusCode, Value)) -> String {
    let task = data(answer);
    let id = task
        .as_str()
        .unwrap_or_else(|| panic!("the task id is a string: {task}"));
    assert!(uuid::Uuid::parse_str(id).is_ok(), "a UUID: {id}");
    id.to_owned()
}

async fn post_direct(app: &TestApp, from: i64, to: i64, text: &str) -> String {
    task_id(
        post(
            app,
            &format!("/chat/user/{to}/"),
            json!({"from": from, "text": text}),
        )
        .await,
    )
}

async fn post_group(app: &TestApp, from: i64, room: i64, text: &str) -> String {
    task_id(
        post(
            app,
            &format!("/chat/group/{room}/"),
            json!({"from": from, "text": text}),
        )
        .await,
    )
}

/// A `task_state` answer: top-level `state` and `result`, plus the chat
/// envelope with `data: {state, result}`.
#[track_caller]
fn task_answer(answer: (StatusCode, Value)) -> Value {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_keys(&body, &["state", "result"]);
    let state = body["state"].as_str().unwrap_or_default();
    assert!(
        matches!(state, "PENDING" | "STARTED" | "SUCCESS" | "FAILURE"),
        "{body}"
    );
    if state == "PENDING" {
        assert!(body["result"].is_null(), "no result while pending: {body}");
    }
    body
}

/// Poll `GET /chat/task_state/<id>` until the task has finished.
async fn finished(app: &TestApp, task: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let body = task_answer(get(app, &format!("/chat/task_state/{task}")).await);
        if body["state"] == "SUCCESS" || body["state"] == "FAILURE" {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task} unfinished: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[track_caller]
fn assert_failure(done: &Value, exc_type: &str) {
    assert_eq!(done["state"], "FAILURE", "{done}");
    let result = &done["result"];
    assert_keys(result, &["exc_type", "exc_message"]);
    assert_eq!(result["exc_type"], exc_type, "{done}");
    assert!(
        result["exc_message"]
            .as_array()
            .is_some_and(|m| !m.is_empty() && m.iter().all(Value::is_string)),
        "{done}"
    );
    assert_no_internals(&result.to_string());
}

/// `GET /chat/messages/unseen/?user_id=N`: the room objects.
async fn unseen(app: &TestApp, user: i64) -> Vec<Value> {
    let rooms = data(get(app, &format!("/chat/messages/unseen/?user_id={user}")).await);
    let rooms = rooms
        .as_array()
        .unwrap_or_else(|| panic!("a list of rooms: {rooms}"))
        .clone();
    for room in &rooms {
        assert_keys(room, &["id", "room_name", "room_member", "messages"]);
    }
    rooms
}

/// Seen marks are written in the background: poll the unseen list until
/// every room's list is empty.
async fn wait_until_nothing_unseen(app: &TestApp, user: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rooms = unseen(app, user).await;
        if rooms
            .iter()
            .all(|room| room["messages"].as_array().is_some_and(Vec::is_empty))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still unseen by user {user}: {rooms:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The viewer's unread count of a room, through GraphQL (a read that marks
/// nothing).
async fn unread_count(app: &TestApp, user: i64, room: i64) -> i64 {
    app.ok_as(
        Some(user),
        "query($id: ID!) { room(id: $id) { unreadCount } }",
        json!({"id": room}),
    )
    .await["room"]["unreadCount"]
        .as_i64()
        .expect("an unread count")
}

const UPDATE_USER: &str = "mutation($id: ID!, $input: UpdateUserInput!) {
    updateUser(id: $id, input: $input) { id } }";

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

async fn users_list_is_a_plain_array_ordered_by_id(app: TestApp) {
    let list = list_users(&app, "").await;
    let expected: Vec<String> = (1..=15).map(|n| format!("user_{n}")).collect();
    assert_eq!(usernames(&list), expected);
    for (n, user) in list.as_array().unwrap().iter().enumerate() {
        assert_eq!(user["id"], n as i64 + 1, "{user}");
        assert_eq!(user["profile"]["status"], "Offline", "{user}");
        assert_eq!(user["profile"]["status_msg"], Value::Null, "{user}");
        assert_eq!(user["last_login"], Value::Null, "{user}");
    }
}

async fn user_object_matches_the_contract(app: TestApp) {
    let (status, user) = get(&app, "/users/3/").await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_user(&user);
    assert_recent(&user["date_joined"]);
    let mut expected = json!({
        "id": 3, "username": "user_3", "first_name": "", "last_name": "", "email": "",
        "is_active": true, "is_staff": false, "is_superuser": false,
        "last_login": null, "date_joined": "",
        "profile": {"id": 3, "user": 3, "status": "Offline", "status_msg": null}
    });
    expected["date_joined"] = user["date_joined"].clone();
    assert_eq!(user, expected);
}

async fn users_paths_work_without_trailing_slash(app: TestApp) {
    let (status, with) = get(&app, "/users/").await;
    assert_eq!(status, StatusCode::OK);
    let (status, without) = get(&app, "/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(with, without);

    let (status, with) = get(&app, "/users/3/").await;
    assert_eq!(status, StatusCode::OK);
    let (status, without) = get(&app, "/users/3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(with, without);

    let (status, user) = post(
        &app,
        "/users",
        json!({"username": "slashless", "password": "pw", "profile": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_i64().unwrap();

    let (status, user) = patch(&app, &format!("/users/{id}"), json!({"first_name": "S"})).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["first_name"], "S");

    let (status, user) = put(
        &app,
        &format!("/users/{id}"),
        json!({"username": "slashless", "last_name": "L", "profile": {"status": "Online"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["last_name"], "L");
    assert_eq!(user["profile"]["status"], "Online");

    let (status, body) = delete(&app, &format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = get(&app, &format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn unknown_users_are_not_found(app: TestApp) {
    let not_found = json!({"detail": "Not found."});
    for path in ["/users/9999/", "/users/9999"] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, not_found, "{path}");
    }
    let (status, body) = patch(&app, "/users/9999/", json!({"first_name": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, not_found);
    let (status, body) = put(
        &app,
        "/users/9999/",
        json!({"username": "ghost", "password": "pw", "profile": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, not_found);
    let (status, body) = json_of(delete(&app, "/users/9999/").await);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, not_found);
    // A malformed id is a client error, never a crash.
    for path in ["/users/abc/", "/users/99999999999999999999/"] {
        let (status, body) = exchange(app.client.get(app.url(path))).await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST,
            "{path}: {status} {body}"
        );
        assert_no_internals(&body);
    }
}

async fn create_user_answers_201_with_the_user(app: TestApp) {
    let user = create_user(
        &app,
        json!({
            "username": "ada", "password": "correct horse", "first_name": "Ada",
            "last_name": "Lovelace", "email": "ada@example.org",
            "profile": {"status": "Busy", "status_msg": "computing"}
        }),
    )
    .await;
    let id = user["id"].as_i64().unwrap();
    assert!(id > 15, "{user}");
    assert_eq!(user["username"], "ada");
    assert_eq!(user["first_name"], "Ada");
    assert_eq!(user["last_name"], "Lovelace");
    assert_eq!(user["email"], "ada@example.org");
    assert_eq!(user["is_active"], true);
    assert_eq!(user["is_staff"], false);
    assert_eq!(user["is_superuser"], false);
    assert_eq!(user["last_login"], Value::Null);
    assert_recent(&user["date_joined"]);
    assert_eq!(user["profile"]["user"], id);
    assert_eq!(user["profile"]["status"], "Busy");
    assert_eq!(user["profile"]["status_msg"], "computing");

    let (status, fetched) = get(&app, &format!("/users/{id}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, user);
    assert_eq!(list_users(&app, "?username=ada").await, json!([user]));
    // The password was stored (hashed) and works.
    app.login("ada", "correct horse").await;
}

async fn create_user_with_an_empty_profile_uses_defaults(app: TestApp) {
    let user = create_user(
        &app,
        json!({"username": "bob", "password": "pw", "profile": {}}),
    )
    .await;
    assert_eq!(user["username"], "bob");
    assert_eq!(user["first_name"], "");
    assert_eq!(user["last_name"], "");
    assert_eq!(user["email"], "");
    assert_eq!(user["profile"]["status"], "Offline");
    assert_eq!(user["profile"]["status_msg"], Value::Null);
}

async fn create_user_requires_username_password_and_profile(app: TestApp) {
    let (status, body) = post(&app, "/users/", json!({"profile": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({
            "username": ["This field is required."],
            "password": ["This field is required."]
        })
    );
    let (status, body) = post(
        &app,
        "/users/",
        json!({"username": "eve", "password": "pw"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"profile": ["This field is required."]}));
    assert_eq!(len(&list_users(&app, "").await), 15);
    assert!(usernames(&list_users(&app, "?username=eve").await).is_empty());
}

async fn invalid_users_list_every_bad_field(app: TestApp) {
    let (status, body) = post(
        &app,
        "/users/",
        json!({
            "username": "no spaces allowed", "email": "nope", "last_name": "x".repeat(151),
            "profile": {"status": "Away", "status_msg": "y".repeat(256)}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_keys(
        &body,
        &["username", "password", "email", "last_name", "profile"],
    );
    assert_eq!(
        body["username"],
        json!([
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."
        ])
    );
    assert_eq!(body["password"], json!(["This field is required."]));
    assert_eq!(body["email"], json!(["Enter a valid email address."]));
    assert_eq!(
        body["last_name"],
        json!(["Ensure this field has no more than 150 characters."])
    );
    assert_eq!(
        body["profile"],
        json!({
            "status": ["\"Away\" is not a valid choice."],
            "status_msg": ["Ensure this field has no more than 255 characters."]
        })
    );
    assert_eq!(len(&list_users(&app, "").await), 15, "nothing stored");
}

async fn duplicate_usernames_are_refused(app: TestApp) {
    let taken = json!({"username": ["A user with that username already exists."]});
    let (status, body) = post(
        &app,
        "/users/",
        json!({"username": "user_3", "password": "pw", "profile": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, taken);
    let (status, body) = patch(&app, "/users/4/", json!({"username": "user_3"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, taken);
    assert_eq!(len(&list_users(&app, "").await), 15);
    assert_eq!(
        usernames(&list_users(&app, "?id=4").await),
        ["user_4"],
        "unchanged"
    );
}

async fn email_must_be_valid_or_empty(app: TestApp) {
    let (status, body) = post(
        &app,
        "/users/",
        json!({"username": "mallory", "password": "pw", "email": "not-an-email", "profile": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"email": ["Enter a valid email address."]}));
    let user = create_user(
        &app,
        json!({"username": "mallory", "password": "pw", "email": "", "profile": {}}),
    )
    .await;
    assert_eq!(user["email"], "");
    let id = user["id"].as_i64().unwrap();
    let (status, body) = patch(&app, &format!("/users/{id}/"), json!({"email": "a b@c.d"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"email": ["Enter a valid email address."]}));
}

async fn numeric_status_msg_is_stored_as_a_string(app: TestApp) {
    let user = create_user(
        &app,
        json!({"username": "numeric", "password": "pw",
               "profile": {"status": "Online", "status_msg": 5}}),
    )
    .await;
    assert_eq!(user["profile"]["status_msg"], "5");
    let id = user["id"].as_i64().unwrap();
    let (_, fetched) = get(&app, &format!("/users/{id}/")).await;
    assert_eq!(fetched["profile"]["status_msg"], "5");
    let (status, patched) = patch(
        &app,
        &format!("/users/{id}/"),
        json!({"profile": {"status_msg": 7}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["profile"]["status_msg"], "7");
    assert_eq!(patched["profile"]["status"], "Online");
}

async fn put_replaces_the_user_and_profile(app: TestApp) {
    let (_, before) = get(&app, "/users/4/").await;
    let (status, user) = put(
        &app,
        "/users/4/",
        json!({
            "username": "four", "first_name": "Four", "last_name": "Fourth",
            "email": "four@example.org", "profile": {"status": "Online", "status_msg": "here"}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_user(&user);
    assert_eq!(user["id"], 4);
    assert_eq!(user["username"], "four");
    assert_eq!(user["first_name"], "Four");
    assert_eq!(user["last_name"], "Fourth");
    assert_eq!(user["email"], "four@example.org");
    assert_eq!(user["date_joined"], before["date_joined"]);
    assert_eq!(
        user["profile"],
        json!({"id": before["profile"]["id"], "user": 4, "status": "Online", "status_msg": "here"})
    );
    let (_, fetched) = get(&app, "/users/4/").await;
    assert_eq!(fetched, user);

    // Without a password the old one is kept.
    app.login("four", SEED_PASSWORD).await;
    // A login sets last_login, shown as `YYYY-MM-DD HH:MM:SS`.
    let (_, fetched) = get(&app, "/users/4/").await;
    let last_login = fetched["last_login"]
        .as_str()
        .unwrap_or_else(|| panic!("last_login set by the login: {fetched}"));
    assert!(has_shape(last_login, LAST_LOGIN), "{last_login}");

    // With a password it is replaced.
    let (status, user) = put(
        &app,
        "/users/4/",
        json!({"username": "four", "password": "n3w-secret", "profile": {"status": "Busy"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["profile"]["status"], "Busy");
    app.login("four", "n3w-secret").await;

    // A full update needs the username.
    let (status, body) = put(
        &app,
        "/users/4/",
        json!({"first_name": "Nameless", "profile": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["username"],
        json!(["This field is required."]),
        "{body}"
    );
    let (_, fetched) = get(&app, "/users/4/").await;
    assert_eq!(fetched["username"], "four");
}

async fn patch_updates_only_the_given_fields(app: TestApp) {
    let (_, before) = get(&app, "/users/5/").await;
    let (status, after) = patch(&app, "/users/5/", json!({"profile": {"status": "Busy"}})).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    let mut expected = before.clone();
    expected["profile"]["status"] = json!("Busy");
    assert_eq!(after, expected);

    let (status, after) = patch(
        &app,
        "/users/5/",
        json!({"first_name": "Five", "profile": {"status_msg": "brb"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["first_name"], "Five");
    assert_eq!(after["username"], "user_5");
    assert_eq!(after["profile"]["status"], "Busy");
    assert_eq!(after["profile"]["status_msg"], "brb");

    let (status, after) = patch(&app, "/users/5/", json!({"profile": {"status_msg": null}})).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["profile"]["status_msg"], Value::Null);
    assert_eq!(after["profile"]["status"], "Busy");

    let (status, body) = patch(&app, "/users/5/", json!({"profile": {"status": "Away"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"profile": {"status": ["\"Away\" is not a valid choice."]}})
    );
    let (_, fetched) = get(&app, "/users/5/").await;
    assert_eq!(fetched["profile"]["status"], "Busy");
    assert_eq!(fetched["first_name"], "Five");
}

async fn delete_user_answers_204(app: TestApp) {
    let (status, body) = delete(&app, "/users/6/").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, "");
    let (status, body) = get(&app, "/users/6/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Not found."}));
    let list = list_users(&app, "").await;
    assert_eq!(len(&list), 14);
    assert!(!usernames(&list).contains(&"user_6".to_owned()));
    let (status, _) = delete(&app, "/users/6/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn deleted_users_messages_stay_without_a_sender(app: TestApp) {
    let room = app.create_room(6, "farewell", &["user_7"]).await;
    let alone = app.create_room(6, "alone", &[]).await;
    app.store_message(room, 6, "bye all").await;
    app.store_message(room, 7, "see you").await;

    let (status, _) = delete(&app, "/users/6/").await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let history = data(get(&app, &format!("/chat/messages/{room}/?user_id=7")).await);
    assert_room_with_messages(&history, room, "farewell", &["user_7"]);
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{history}");
    assert_message(&messages[0], room, "bye all", None);
    assert_message(&messages[1], room, "see you", Some((7, "user_7")));

    let rooms = by_id(data(get(&app, "/chat/chatroom/?user_id=7").await));
    assert_eq!(rooms.len(), 1);
    assert_room(&rooms[0], room, "farewell", &["user_7"]);
    // The deleted user is unknown now, and the room they were alone in is gone.
    refused(get(&app, "/chat/chatroom/?user_id=6").await, 404);
    refused(get(&app, &format!("/chat/chatroom/{alone}/")).await, 404);
}

async fn users_list_filters_match_exactly(app: TestApp) {
    create_user(
        &app,
        json!({"username": "carol", "password": "pw", "first_name": "Carol",
               "last_name": "Shaw", "profile": {"status": "Online"}}),
    )
    .await;
    create_user(
        &app,
        json!({"username": "dave", "password": "pw", "first_name": "Carol",
               "profile": {"status": "Busy"}}),
    )
    .await;
    let cases: [(&str, &[&str]); 9] = [
        ("?username=user_7", &["user_7"]),
        ("?username=user_", &[]),
        ("?username=USER_7", &[]),
        ("?first_name=Carol", &["carol", "dave"]),
        ("?first_name=Carol&last_name=Shaw", &["carol"]),
        ("?last_name=Shaw", &["carol"]),
        ("?profile__status=Online", &["carol"]),
        ("?profile__status=Busy", &["dave"]),
        ("?id=2", &["user_2"]),
    ];
    for (query, expected) in cases {
        assert_eq!(
            usernames(&list_users(&app, query).await),
            expected,
            "{query}"
        );
    }
    assert_eq!(len(&list_users(&app, "?profile__status=Offline").await), 15);
    assert!(usernames(&list_users(&app, "?id=9999").await).is_empty());
    // Filters work without the trailing slash too.
    let (status, list) = get(&app, "/users?username=dave").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usernames(&list), ["dave"]);

    let (status, body) = get(&app, "/users/?id=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.as_object().is_some_and(|fields| !fields.is_empty()),
        "a field error: {body}"
    );
}

async fn user_list_shows_every_write_at_once(app: TestApp) {
    // Every write comes right after a read of the same list, so a cached
    // copy exists when it happens.
    assert_eq!(len(&list_users(&app, "").await), 15);
    assert!(usernames(&list_users(&app, "?username=fresh").await).is_empty());
    let user = create_user(
        &app,
        json!({"username": "fresh", "password": "pw", "profile": {}}),
    )
    .await;
    let id = user["id"].as_i64().unwrap();
    let list = list_users(&app, "").await;
    assert_eq!(len(&list), 16);
    assert_eq!(list[15], user);
    assert_eq!(
        usernames(&list_users(&app, "?username=fresh").await),
        ["fresh"]
    );

    // PATCH of profile.status alone.
    assert!(usernames(&list_users(&app, "?profile__status=Busy").await).is_empty());
    let (status, patched) = patch(
        &app,
        &format!("/users/{id}/"),
        json!({"profile": {"status": "Busy"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        usernames(&list_users(&app, "?profile__status=Busy").await),
        ["fresh"]
    );
    assert_eq!(list_users(&app, "").await[15], patched);

    // PUT.
    let (status, replaced) = put(
        &app,
        &format!("/users/{id}/"),
        json!({"username": "renamed", "profile": {"status": "Busy", "status_msg": "new name"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert!(usernames(&list_users(&app, "?username=fresh").await).is_empty());
    assert_eq!(
        list_users(&app, "?profile__status=Busy").await,
        json!([replaced])
    );

    // A write through GraphQL.
    assert!(usernames(&list_users(&app, "?first_name=Two").await).is_empty());
    assert!(usernames(&list_users(&app, "?profile__status=Online").await).is_empty());
    app.ok_as(
        Some(2),
        UPDATE_USER,
        json!({"id": "2", "input": {"firstName": "Two", "profile": {"status": "ONLINE"}}}),
    )
    .await;
    assert_eq!(
        usernames(&list_users(&app, "?first_name=Two").await),
        ["user_2"]
    );
    assert_eq!(
        usernames(&list_users(&app, "?profile__status=Online").await),
        ["user_2"]
    );
    assert_eq!(list_users(&app, "").await[1]["first_name"], "Two");

    // DELETE.
    let (status, _) = delete(&app, &format!("/users/{id}/")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let list = list_users(&app, "").await;
    assert_eq!(len(&list), 15);
    assert!(!usernames(&list).contains(&"renamed".to_owned()));
    assert!(usernames(&list_users(&app, "?profile__status=Busy").await).is_empty());
}

async fn user_list_cache_is_shared_between_instances(app: TestApp) {
    let other = start(app.config.clone(), app.backend, None).await;
    for instance in [&app, &other] {
        assert_eq!(len(&list_users(instance, "").await), 15);
        assert!(usernames(&list_users(instance, "?username=shared").await).is_empty());
        assert!(usernames(&list_users(instance, "?profile__status=Busy").await).is_empty());
        assert!(usernames(&list_users(instance, "?first_name=Three").await).is_empty());
    }

    // Created on one instance, listed at once by the other.
    let user = create_user(
        &app,
        json!({"username": "shared", "password": "pw", "profile": {}}),
    )
    .await;
    let id = user["id"].as_i64().unwrap();
    assert_eq!(len(&list_users(&other, "").await), 16);
    assert_eq!(
        usernames(&list_users(&other, "?username=shared").await),
        ["shared"]
    );

    // Patched on the other, listed at once by the first.
    let (status, _) = patch(
        &other,
        &format!("/users/{id}/"),
        json!({"profile": {"status": "Busy"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        usernames(&list_users(&app, "?profile__status=Busy").await),
        ["shared"]
    );

    // GraphQL on the other instance.
    other
        .ok_as(
            Some(3),
            UPDATE_USER,
            json!({"id": "3", "input": {"firstName": "Three"}}),
        )
        .await;
    assert_eq!(
        usernames(&list_users(&app, "?first_name=Three").await),
        ["user_3"]
    );

    // Deleted on the first, gone from the other's list.
    let (status, _) = delete(&app, &format!("/users/{id}/")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(len(&list_users(&other, "").await), 15);
    assert!(usernames(&list_users(&other, "?username=shared").await).is_empty());
    assert!(usernames(&list_users(&other, "?profile__status=Busy").await).is_empty());
    other.stop().await;
}

async fn passwords_never_leave_the_server(app: TestApp) {
    let secrets = ["Sup3r-s3cret!", "An0ther-s3cret!", "Th1rd-s3cret!"];
    let mut bodies = Vec::new();
    let (status, text) = call_text(
        &app,
        Method::POST,
        "/users/",
        Some(&json!({"username": "carol", "password": secrets[0], "profile": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let id = parse(status, &text)["id"].as_i64().unwrap();
    bodies.push(text);
    let requests = [
        (Method::GET, format!("/users/{id}/"), None),
        (Method::GET, "/users/".to_owned(), None),
        (Method::GET, "/users/?username=carol".to_owned(), None),
        (
            Method::PATCH,
            format!("/users/{id}/"),
            Some(json!({"password": secrets[1]})),
        ),
        (
            Method::PUT,
            format!("/users/{id}/"),
            Some(json!({"username": "carol", "password": secrets[2], "profile": {}})),
        ),
    ];
    for (method, path, body) in requests {
        let (status, text) = call_text(&app, method, &path, body.as_ref()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        bodies.push(text);
    }
    for text in &bodies {
        assert!(!text.to_lowercase().contains("password"), "{text}");
        assert!(!text.contains("$argon2"), "{text}");
        for secret in secrets {
            assert!(!text.contains(secret), "{text}");
        }
    }
    // Stored hashed: the last one is the one that works.
    app.login("carol", secrets[2]).await;
}

// ---------------------------------------------------------------------------
// Chat rooms
// ---------------------------------------------------------------------------

async fn group_room_list_shows_only_ids_and_names(app: TestApp) {
    let family = app.create_room(9, "family", &["user_7"]).await;
    let club = app.create_room(1, "club", &[]).await;
    app.direct_room(2, 3).await;
    let expected = [
        json!({"id": family, "room_name": "family"}),
        json!({"id": club, "room_name": "club"}),
    ];
    assert_eq!(by_id(data(get(&app, "/chat/chatroom/").await)), expected);
    assert_eq!(by_id(data(get(&app, "/chat/chatroom").await)), expected);
}

async fn room_list_of_a_user_has_members_and_direct_rooms(app: TestApp) {
    let family = app.create_room(9, "family", &["user_7", "user_2"]).await;
    app.create_room(1, "club", &["user_3"]).await;
    let left = app.create_room(2, "left behind", &["user_4"]).await;
    let (status, _) = delete(&app, &format!("/chat/chatroom/{left}/?user_id=2")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let direct = app.direct_room(3, 2).await;

    for path in ["/chat/chatroom/?user_id=2", "/chat/chatroom?user_id=2"] {
        let rooms = by_id(data(get(&app, path).await));
        assert_eq!(rooms.len(), 2, "{rooms:?}");
        assert_room(&rooms[0], family, "family", &["user_2", "user_7", "user_9"]);
        assert_room(&rooms[1], direct, "user_2 - user_3", &["user_2", "user_3"]);
    }
    assert_eq!(
        data(get(&app, "/chat/chatroom/?user_id=15").await),
        json!([])
    );
}

async fn create_room_answers_the_room_object(app: TestApp) {
    let room = data(
        post(
            &app,
            "/chat/chatroom/",
            json!({"room_name": "family", "room_member": [
                {"username": "user_10"}, {"username": "user_2"},
                {"username": "nobody"}, {"username": "user_9"}
            ]}),
        )
        .await,
    );
    let id = room["id"].as_i64().expect("a numeric id");
    // Unknown usernames are ignored; members are ordered by user id.
    assert_room(&room, id, "family", &["user_2", "user_9", "user_10"]);
    assert_eq!(
        data(get(&app, &format!("/chat/chatroom/{id}/?user_id=10")).await),
        room
    );
    assert_eq!(
        by_id(data(get(&app, "/chat/chatroom/").await)),
        [json!({"id": id, "room_name": "family"})]
    );

    let solo = data(post(&app, "/chat/chatroom", json!({"room_name": "solo"})).await);
    let solo_id = solo["id"].as_i64().expect("a numeric id");
    assert_room(&solo, solo_id, "solo", &[]);
    assert_eq!(
        data(get(&app, &format!("/chat/chatroom/{solo_id}/")).await),
        json!({"id": solo_id, "room_name": "solo"})
    );
}

async fn create_room_accepts_a_form_body(app: TestApp) {
    let room = data(post_form(&app, "/chat/chatroom/", "room_name=family").await);
    let id = room["id"].as_i64().expect("a numeric id");
    assert_room(&room, id, "family", &[]);
    let room = data(post_form(&app, "/chat/chatroom", "room_name=book+club%21").await);
    let id = room["id"].as_i64().expect("a numeric id");
    assert_room(&room, id, "book club!", &[]);
    assert_eq!(len(&data(get(&app, "/chat/chatroom/").await)), 2);
}

async fn create_room_refuses_bad_bodies(app: TestApp) {
    for path in ["/chat/chatroom/", "/chat/chatroom"] {
        refused_with(post_raw(&app, path, Some(JSON), "").await, 400, EMPTY_BODY);
        refused_with(post_raw(&app, path, None, "").await, 400, EMPTY_BODY);
        refused_with(post_form(&app, path, "").await, 400, EMPTY_BODY);
        refused_with(post(&app, path, json!([])).await, 400, EMPTY_BODY);
        refused_with(
            post(&app, path, json!([{"room_name": "x"}])).await,
            400,
            EMPTY_BODY,
        );
        refused_with(
            post(&app, path, json!({"room_member": [{"username": "user_1"}]})).await,
            400,
            "Attribute/s room_name missing",
        );
        refused_with(
            post_form(&app, path, "name=x").await,
            400,
            "Attribute/s room_name missing",
        );
        refused(
            post_raw(&app, path, Some(JSON), "{\"room_name\": ").await,
            400,
        );
    }
    // Room names are unique.
    app.create_room(1, "family", &[]).await;
    refused(
        post(&app, "/chat/chatroom/", json!({"room_name": "family"})).await,
        400,
    );
    refused(
        post_form(&app, "/chat/chatroom/", "room_name=family").await,
        400,
    );
    assert_eq!(len(&data(get(&app, "/chat/chatroom/").await)), 1);
}

async fn a_room_without_user_id_shows_only_group_rooms(app: TestApp) {
    let family = app.create_room(9, "family", &["user_7"]).await;
    let expected = json!({"id": family, "room_name": "family"});
    assert_eq!(
        data(get(&app, &format!("/chat/chatroom/{family}/")).await),
        expected
    );
    assert_eq!(
        data(get(&app, &format!("/chat/chatroom/{family}")).await),
        expected
    );
    let direct = app.direct_room(2, 3).await;
    refused(get(&app, &format!("/chat/chatroom/{direct}/")).await, 404);
    refused(get(&app, "/chat/chatroom/9999/").await, 404);
}

async fn a_room_with_user_id_is_shown_to_members_only(app: TestApp) {
    let family = app.create_room(9, "family", &["user_7"]).await;
    for path in [
        format!("/chat/chatroom/{family}/?user_id=7"),
        format!("/chat/chatroom/{family}?user_id=9"),
    ] {
        let room = data(get(&app, &path).await);
        assert_room(&room, family, "family", &["user_7", "user_9"]);
    }
    refused(
        get(&app, &format!("/chat/chatroom/{family}/?user_id=4")).await,
        404,
    );
    refused(
        get(&app, &format!("/chat/chatroom/{family}/?user_id=9999")).await,
        404,
    );
    refused(get(&app, "/chat/chatroom/9999/?user_id=7").await, 404);

    let direct = app.direct_room(2, 3).await;
    let room = data(get(&app, &format!("/chat/chatroom/{direct}/?user_id=3")).await);
    assert_room(&room, direct, "user_2 - user_3", &["user_2", "user_3"]);
    refused(
        get(&app, &format!("/chat/chatroom/{direct}/?user_id=4")).await,
        404,
    );
}

async fn joining_a_room(app: TestApp) {
    let family = app.create_room(9, "family", &["user_7"]).await;
    let (status, body) = put_empty(&app, &format!("/chat/chatroom/{family}/?user_id=4")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": 200, "message": "HTTP_200_OK"}));
    let room = data(get(&app, &format!("/chat/chatroom/{family}/?user_id=4")).await);
    assert_room(&room, family, "family", &["user_4", "user_7", "user_9"]);

    // Already a member.
    refused(
        put_empty(&app, &format!("/chat/chatroom/{family}/?user_id=4")).await,
        400,
    );
    refused(
        put_empty(&app, &format!("/chat/chatroom/{family}/?user_id=9")).await,
        400,
    );
    // Unknown room or user.
    refused(put_empty(&app, "/chat/chatroom/9999/?user_id=4").await, 404);
    refused(
        put_empty(&app, &format!("/chat/chatroom/{family}/?user_id=9999")).await,
        404,
    );
    // A direct room cannot be joined.
    let direct = app.direct_room(2, 3).await;
    refused_with(
        put_empty(&app, &format!("/chat/chatroom/{direct}/?user_id=4")).await,
        400,
        "Can't join a private chat",
    );
    let room = data(get(&app, &format!("/chat/chatroom/{direct}/?user_id=2")).await);
    assert_room(&room, direct, "user_2 - user_3", &["user_2", "user_3"]);

    // Without the trailing slash.
    let (status, body) = put_empty(&app, &format!("/chat/chatroom/{family}?user_id=12")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": 200, "message": "HTTP_200_OK"}));
    let room = data(get(&app, &format!("/chat/chatroom/{family}/?user_id=12")).await);
    assert_room(
        &room,
        family,
        "family",
        &["user_4", "user_7", "user_9", "user_12"],
    );
}

async fn leaving_a_room_keeps_history_and_allows_rejoining(app: TestApp) {
    let club = app.create_room(1, "club", &["user_2", "user_4"]).await;
    let (status, body) = delete(&app, &format!("/chat/chatroom/{club}/?user_id=4")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, "");
    refused(
        get(&app, &format!("/chat/chatroom/{club}/?user_id=4")).await,
        404,
    );
    let room = data(get(&app, &format!("/chat/chatroom/{club}/?user_id=1")).await);
    assert_room(&room, club, "club", &["user_1", "user_2"]);
    assert!(
        by_id(data(get(&app, "/chat/chatroom/?user_id=4").await)).is_empty(),
        "no longer listed"
    );

    // Not a member (any more, or ever).
    refused(
        json_of(delete(&app, &format!("/chat/chatroom/{club}/?user_id=4")).await),
        400,
    );
    refused(
        json_of(delete(&app, &format!("/chat/chatroom/{club}/?user_id=9")).await),
        400,
    );
    // Unknown room or user.
    refused(
        json_of(delete(&app, "/chat/chatroom/9999/?user_id=4").await),
        404,
    );
    refused(
        json_of(delete(&app, &format!("/chat/chatroom/{club}/?user_id=9999")).await),
        404,
    );

    // Re-joining starts a new membership; the old one is kept.
    let (status, _) = put_empty(&app, &format!("/chat/chatroom/{club}/?user_id=4")).await;
    assert_eq!(status, StatusCode::OK);
    let room = data(get(&app, &format!("/chat/chatroom/{club}/?user_id=4")).await);
    assert_room(&room, club, "club", &["user_1", "user_2", "user_4"]);
    let history = app
        .ok_as(
            Some(4),
            "query($id: ID!) { room(id: $id) { memberships { user { username } isCurrent } } }",
            json!({"id": club}),
        )
        .await;
    let mine: Vec<&Value> = history["room"]["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["user"]["username"] == "user_4")
        .collect();
    assert_eq!(mine.len(), 2, "{history}");
    assert_eq!(mine[0]["isCurrent"], false, "{history}");
    assert_eq!(mine[1]["isCurrent"], true, "{history}");

    // Without the trailing slash.
    let (status, body) = delete(&app, &format!("/chat/chatroom/{club}?user_id=2")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let room = data(get(&app, &format!("/chat/chatroom/{club}/?user_id=1")).await);
    assert_room(&room, club, "club", &["user_1", "user_4"]);
}

async fn the_last_member_leaving_deletes_the_room(app: TestApp) {
    let lonely = app.create_room(5, "lonely", &["user_6"]).await;
    let (status, _) = delete(&app, &format!("/chat/chatroom/{lonely}/?user_id=6")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    data(get(&app, &format!("/chat/chatroom/{lonely}/")).await);

    let (status, _) = delete(&app, &format!("/chat/chatroom/{lonely}/?user_id=5")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(get(&app, &format!("/chat/chatroom/{lonely}/")).await, 404);
    refused(
        get(&app, &format!("/chat/chatroom/{lonely}/?user_id=5")).await,
        404,
    );
    refused(
        put_empty(&app, &format!("/chat/chatroom/{lonely}/?user_id=5")).await,
        404,
    );
    assert_eq!(data(get(&app, "/chat/chatroom/").await), json!([]));
    // The name is free again.
    let room = data(post(&app, "/chat/chatroom/", json!({"room_name": "lonely"})).await);
    assert_eq!(room["room_name"], "lonely");
}

async fn user_id_must_be_a_known_positive_integer(app: TestApp) {
    let family = app.create_room(1, "family", &["user_2"]).await;
    let paths = [
        (Method::GET, "/chat/chatroom/".to_owned()),
        (Method::GET, format!("/chat/chatroom/{family}/")),
        (Method::PUT, format!("/chat/chatroom/{family}/")),
        (Method::DELETE, format!("/chat/chatroom/{family}/")),
        (Method::GET, format!("/chat/messages/{family}/")),
        (Method::GET, "/chat/messages/unseen/".to_owned()),
    ];
    for (method, path) in paths {
        for bad in ["abc", "0", "-3", "1.5", "2abc"] {
            let answer = call(&app, method.clone(), &format!("{path}?user_id={bad}"), None).await;
            let (status, body) = answer.clone();
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {path}?user_id={bad}: {body}"
            );
            refused(answer, 400);
        }
        let answer = call(&app, method.clone(), &format!("{path}?user_id=9999"), None).await;
        assert_eq!(
            answer.0,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            answer.1
        );
        refused(answer, 404);
        let (status, body) = call(
            &app,
            method.clone(),
            &format!("{path}?user_id=99999999999999999999"),
            None,
        )
        .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{method} {path}: {status} {body}"
        );
        refused((status, body), status.as_u16());
    }
    // Nothing changed.
    let room = data(get(&app, &format!("/chat/chatroom/{family}/?user_id=1")).await);
    assert_room(&room, family, "family", &["user_1", "user_2"]);
}

async fn user_id_is_required_where_the_contract_names_it(app: TestApp) {
    let family = app.create_room(1, "family", &["user_2"]).await;
    refused(get(&app, "/chat/messages/unseen/").await, 400);
    refused(get(&app, &format!("/chat/messages/{family}/")).await, 400);
    refused(
        put_empty(&app, &format!("/chat/chatroom/{family}/")).await,
        400,
    );
    refused(
        json_of(delete(&app, &format!("/chat/chatroom/{family}/")).await),
        400,
    );
    let room = data(get(&app, &format!("/chat/chatroom/{family}/?user_id=1")).await);
    assert_room(&room, family, "family", &["user_1", "user_2"]);
}

// ---------------------------------------------------------------------------
// Sends and task states
// ---------------------------------------------------------------------------

async fn a_direct_message_answers_a_task_id_at_once(app: TestApp) {
    let task = post_direct(&app, 2, 3, "hey man").await;
    task_answer(get(&app, &format!("/chat/task_state/{task}")).await);
    let done = finished(&app, &task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    let message = &done["result"];
    assert_task_message(message, "hey man", (2, "user_2"));
    let room = message["room"]["id"].as_i64().expect("a room id");
    assert_room(
        &message["room"],
        room,
        "user_2 - user_3",
        &["user_2", "user_3"],
    );
    // User 2's only membership: the new direct room.
    assert_eq!(len(&message["msg_from"]["chat_room"]), 1, "{message}");

    // The reply lands in the same room.
    let reply = finished(&app, &post_direct(&app, 3, 2, "yo").await).await;
    assert_eq!(reply["state"], "SUCCESS", "{reply}");
    assert_task_message(&reply["result"], "yo", (3, "user_3"));
    assert_eq!(reply["result"]["room"]["id"], room);

    // The lower id comes first in the name, whoever sends.
    let other = finished(&app, &post_direct(&app, 5, 2, "hello two").await).await;
    assert_eq!(other["state"], "SUCCESS", "{other}");
    assert_eq!(other["result"]["room"]["room_name"], "user_2 - user_5");

    let rooms = by_id(data(get(&app, "/chat/chatroom/?user_id=2").await));
    let names: Vec<&str> = rooms
        .iter()
        .map(|r| r["room_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user_2 - user_3", "user_2 - user_5"]);
    // Direct rooms are not group rooms.
    assert_eq!(data(get(&app, "/chat/chatroom/").await), json!([]));
    assert_eq!(app.count_messages("hey man").await, 1);
}

async fn a_group_message_shows_the_room_and_the_senders_memberships(app: TestApp) {
    let family = app.create_room(9, "family", &["user_7"]).await;
    let done = finished(&app, &post_group(&app, 9, family, "hi fam").await).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    let message = &done["result"];
    assert_task_message(message, "hi fam", (9, "user_9"));
    assert_room(&message["room"], family, "family", &["user_7", "user_9"]);

    // msg_from.chat_room lists the sender's memberships by membership id.
    let memberships = app
        .ok_as(
            Some(9),
            "query($id: ID!) { room(id: $id) { memberships { id user { username } } } }",
            json!({"id": family}),
        )
        .await;
    let membership: i64 = memberships["room"]["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"]["username"] == "user_9")
        .unwrap_or_else(|| panic!("user_9's membership: {memberships}"))["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let chat_room = &message["msg_from"]["chat_room"];
    assert_eq!(len(chat_room), 1, "{message}");
    assert_eq!(chat_room[0]["id"], membership, "{message}");

    assert_eq!(app.count_messages("hi fam").await, 1);
    let history = data(get(&app, &format!("/chat/messages/{family}/?user_id=7")).await);
    assert_eq!(history["messages"][0]["id"], message["id"]);
}

async fn task_state_is_exactly_state_and_result(app: TestApp) {
    // A task sent through GraphQL is visible here too.
    let room = app.create_room(1, "r", &[]).await;
    let task = app.send_group(1, room, "via graphql").await;
    let done = finished(&app, &task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_task_message(&done["result"], "via graphql", (1, "user_1"));
    let keys: Vec<&String> = done.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["state", "result"], "{done}");
    // With and without the trailing slash.
    assert_eq!(
        task_answer(get(&app, &format!("/chat/task_state/{task}/")).await),
        done
    );
    assert_eq!(
        task_answer(get(&app, &format!("/chat/task_state/{task}")).await),
        done
    );
}

async fn unknown_tasks_are_not_found(app: TestApp) {
    let unknown = uuid::Uuid::new_v4();
    refused(get(&app, &format!("/chat/task_state/{unknown}")).await, 404);
    refused(
        get(&app, &format!("/chat/task_state/{unknown}/")).await,
        404,
    );
    refused(get(&app, "/chat/task_state/not-a-uuid").await, 404);
    refused(get(&app, "/chat/task_state/12345/").await, 404);
}

async fn group_sends_by_non_members_fail(app: TestApp) {
    let family = app.create_room(9, "family", &["user_7"]).await;
    let done = finished(&app, &post_group(&app, 4, family, "let me in").await).await;
    assert_eq!(
        done["result"],
        json!({"exc_type": "PermissionDenied", "exc_message": ["User doesn't belong to chatroom"]})
    );
    assert_failure(&done, "PermissionDenied");
    assert_eq!(app.count_messages("let me in").await, 0);

    // A former member is no member.
    let (status, _) = delete(&app, &format!("/chat/chatroom/{family}/?user_id=7")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let done = finished(&app, &post_group(&app, 7, family, "still here?").await).await;
    assert_failure(&done, "PermissionDenied");
    assert_eq!(app.count_messages("still here?").await, 0);
}

async fn texts_out_of_bounds_are_refused_at_once(app: TestApp) {
    let room = app.create_room(1, "r", &["user_2"]).await;
    let too_long = "x".repeat(1025);
    for text in [too_long.as_str(), ""] {
        for path in [format!("/chat/group/{room}/"), "/chat/user/2/".to_owned()] {
            refused_with(
                post(&app, &path, json!({"from": 1, "text": text})).await,
                400,
                "text must be 1 to 1024 characters",
            );
        }
    }
    let tasks = entity::task::Entity::find().count(&app.db).await.unwrap();
    assert_eq!(tasks, 0, "a refused send has no task");
    // Exactly 1024 characters is fine.
    let longest = "é".repeat(1024);
    let done = finished(&app, &post_group(&app, 1, room, &longest).await).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_eq!(done["result"]["text"], longest.as_str());
}

async fn sends_refuse_bad_bodies(app: TestApp) {
    let family = app.create_room(2, "family", &["user_3"]).await;
    for path in [
        "/chat/user/3/".to_owned(),
        "/chat/user/3".to_owned(),
        format!("/chat/group/{family}/"),
        format!("/chat/group/{family}"),
    ] {
        let path = path.as_str();
        refused_with(post_raw(&app, path, Some(JSON), "").await, 400, EMPTY_BODY);
        refused_with(post_raw(&app, path, None, "").await, 400, EMPTY_BODY);
        refused_with(post_form(&app, path, "").await, 400, EMPTY_BODY);
        refused_with(post(&app, path, json!([])).await, 400, EMPTY_BODY);
        refused_with(
            post(&app, path, json!([{"from": 2, "text": "hi"}])).await,
            400,
            EMPTY_BODY,
        );
        refused_with(
            post(&app, path, json!({"text": "hi"})).await,
            400,
            "Attribute/s from missing",
        );
        refused_with(
            post(&app, path, json!({"from": 2})).await,
            400,
            "Attribute/s text missing",
        );
        refused_with(
            post(&app, path, json!({"message": "hi"})).await,
            400,
            "Attribute/s from - text missing",
        );
        refused_with(
            post_form(&app, path, "from=2").await,
            400,
            "Attribute/s text missing",
        );
        refused_with(
            post_form(&app, path, "text=hi").await,
            400,
            "Attribute/s from missing",
        );
        refused(post_raw(&app, path, Some(JSON), "{\"from\": 2,").await, 400);
    }
    assert_eq!(app.count_messages("hi").await, 0);
}

async fn sends_need_a_known_positive_sender(app: TestApp) {
    let family = app.create_room(2, "family", &["user_3"]).await;
    for path in ["/chat/user/3/".to_owned(), format!("/chat/group/{family}/")] {
        let path = path.as_str();
        for from in [json!("abc"), json!(0), json!(-1), json!(2.5), json!("-2")] {
            refused(
                post(&app, path, json!({"from": from, "text": "hi"})).await,
                400,
            );
        }
        refused(post_form(&app, path, "from=abc&text=hi").await, 400);
        refused(post_form(&app, path, "from=0&text=hi").await, 400);
        refused(
            post(&app, path, json!({"from": 9999, "text": "hi"})).await,
            404,
        );
        refused(post_form(&app, path, "from=9999&text=hi").await, 404);
    }
    assert_eq!(app.count_messages("hi").await, 0);
}

async fn sends_accept_form_bodies_and_paths_without_slash(app: TestApp) {
    let family = app.create_room(2, "family", &["user_3"]).await;

    let task = task_id(post_form(&app, "/chat/user/3/", "from=2&text=fish+%26+chips").await);
    let done = finished(&app, &task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_task_message(&done["result"], "fish & chips", (2, "user_2"));
    assert_eq!(done["result"]["room"]["room_name"], "user_2 - user_3");

    let task =
        task_id(post_form(&app, &format!("/chat/group/{family}"), "from=3&text=hi+fam").await);
    let done = finished(&app, &task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_task_message(&done["result"], "hi fam", (3, "user_3"));
    assert_eq!(done["result"]["room"]["id"], family);

    let task = task_id(post(&app, "/chat/user/2", json!({"from": 3, "text": "no slash"})).await);
    let done = finished(&app, &task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_eq!(done["result"]["room"]["room_name"], "user_2 - user_3");

    let task = task_id(
        post(
            &app,
            &format!("/chat/group/{family}"),
            json!({"from": 2, "text": "group, no slash"}),
        )
        .await,
    );
    let done = finished(&app, &task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");

    let history = data(get(&app, &format!("/chat/messages/{family}/?user_id=2")).await);
    assert_eq!(texts(&history["messages"]), ["hi fam", "group, no slash"]);
}

async fn sends_to_unknown_targets_store_nothing(app: TestApp) {
    // The contract does not say whether this is refused at once (404) or
    // accepted and failed by the job; either way nothing is stored.
    for path in ["/chat/user/9999/", "/chat/group/9999/"] {
        let (status, body) = post(&app, path, json!({"from": 2, "text": "into the void"})).await;
        if status == StatusCode::OK {
            let task = task_id((status, body));
            let done = finished(&app, &task).await;
            assert_eq!(done["state"], "FAILURE", "{path}: {done}");
            assert!(done["result"]["exc_type"].is_string(), "{path}: {done}");
        } else {
            refused((status, body), 404);
        }
    }
    assert_eq!(app.count_messages("into the void").await, 0);
}

// ---------------------------------------------------------------------------
// Room history and unseen messages
// ---------------------------------------------------------------------------

async fn room_messages_list_the_history_with_senders(app: TestApp) {
    let family = app.create_room(1, "family", &["user_2"]).await;
    let a = app.store_message(family, 1, "m1").await;
    let b = app.store_message(family, 2, "m2").await;
    let c = app.store_message(family, 1, "m3").await;

    let room = data(get(&app, &format!("/chat/messages/{family}/?user_id=2")).await);
    assert_room_with_messages(&room, family, "family", &["user_1", "user_2"]);
    let messages = room["messages"].as_array().unwrap();
    let ids: Vec<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [a, b, c], "oldest first");
    assert_message(&messages[0], family, "m1", Some((1, "user_1")));
    assert_message(&messages[1], family, "m2", Some((2, "user_2")));
    assert_message(&messages[2], family, "m3", Some((1, "user_1")));
    let sent: Vec<_> = messages.iter().map(|m| timestamp(&m["sent_at"])).collect();
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "{room}");
    // Each sender's memberships: one, in this room.
    assert_eq!(len(&messages[0]["msg_from"]["chat_room"]), 1, "{room}");

    // Without the trailing slash, and as the other member.
    let again = data(get(&app, &format!("/chat/messages/{family}?user_id=1")).await);
    assert_eq!(again["messages"], room["messages"]);

    // Only current members read it.
    refused(
        get(&app, &format!("/chat/messages/{family}/?user_id=3")).await,
        404,
    );
    refused(get(&app, "/chat/messages/9999/?user_id=2").await, 404);
    refused(
        get(&app, &format!("/chat/messages/{family}/?user_id=9999")).await,
        404,
    );
    let (status, _) = delete(&app, &format!("/chat/chatroom/{family}/?user_id=2")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(
        get(&app, &format!("/chat/messages/{family}/?user_id=2")).await,
        404,
    );

    // An empty room.
    let empty = app.create_room(5, "empty", &[]).await;
    let room = data(get(&app, &format!("/chat/messages/{empty}/?user_id=5")).await);
    assert_room_with_messages(&room, empty, "empty", &["user_5"]);
    assert_eq!(room["messages"], json!([]));
}

async fn reading_a_room_marks_its_messages_seen(app: TestApp) {
    let family = app.create_room(1, "family", &["user_2", "user_3"]).await;
    app.store_message(family, 1, "m1").await;
    app.store_message(family, 3, "m2").await;
    app.store_message(family, 2, "m3").await;
    assert_eq!(unread_count(&app, 2, family).await, 2);

    data(get(&app, &format!("/chat/messages/{family}/?user_id=2")).await);
    // Marked in the background.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while unread_count(&app, 2, family).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reading the room did not mark its messages seen"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let rooms = unseen(&app, 2).await;
    assert_eq!(room_in(&rooms, family)["messages"], json!([]));

    // Seen marks are per user.
    assert_eq!(unread_count(&app, 3, family).await, 2);
    let rooms = unseen(&app, 3).await;
    assert_eq!(texts(&room_in(&rooms, family)["messages"]), ["m1", "m3"]);
}

async fn unseen_lists_every_room_of_the_user(app: TestApp) {
    let family = app.create_room(1, "family", &["user_2"]).await;
    let quiet = app.create_room(2, "quiet", &["user_5"]).await;
    let gone = app.create_room(2, "gone", &["user_6"]).await;
    let direct = app.direct_room(4, 2).await;
    let other = app.create_room(7, "other", &["user_8"]).await;
    let (status, _) = delete(&app, &format!("/chat/chatroom/{gone}/?user_id=2")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let f1 = app.store_message(family, 1, "f1").await;
    app.store_message(family, 2, "f2 mine").await;
    let f3 = app.store_message(family, 1, "f3").await;
    let d1 = app.store_message(direct, 4, "d1").await;
    app.store_message(gone, 6, "g1").await;
    app.store_message(other, 7, "o1").await;

    let rooms = unseen(&app, 2).await;
    let mut ids: Vec<i64> = rooms.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    let mut expected = [family, quiet, direct];
    expected.sort();
    assert_eq!(ids, expected, "one entry per current room: {rooms:?}");

    let room = room_in(&rooms, family);
    assert_room_with_messages(room, family, "family", &["user_1", "user_2"]);
    let messages = room["messages"].as_array().unwrap();
    assert_eq!(
        texts(&room["messages"]),
        ["f1", "f3"],
        "not own, oldest first"
    );
    assert_message(&messages[0], family, "f1", Some((1, "user_1")));
    assert_message(&messages[1], family, "f3", Some((1, "user_1")));
    assert_eq!(messages[0]["id"], f1);
    assert_eq!(messages[1]["id"], f3);

    let room = room_in(&rooms, quiet);
    assert_room_with_messages(room, quiet, "quiet", &["user_2", "user_5"]);
    assert_eq!(room["messages"], json!([]));

    let room = room_in(&rooms, direct);
    assert_room_with_messages(room, direct, "user_2 - user_4", &["user_2", "user_4"]);
    assert_eq!(texts(&room["messages"]), ["d1"]);
    assert_message(&room["messages"][0], direct, "d1", Some((4, "user_4")));
    assert_eq!(room["messages"][0]["id"], d1);

    // They are marked seen in the background: soon the lists are empty.
    wait_until_nothing_unseen(&app, 2).await;

    // A new message shows up, alone.
    app.store_message(family, 1, "f4").await;
    let rooms = unseen(&app, 2).await;
    assert_eq!(texts(&room_in(&rooms, family)["messages"]), ["f4"]);
    assert_eq!(room_in(&rooms, direct)["messages"], json!([]));
}

async fn unseen_marks_are_per_user(app: TestApp) {
    let trio = app.create_room(1, "trio", &["user_2", "user_3"]).await;
    app.store_message(trio, 1, "hello both").await;
    assert_eq!(
        texts(&room_in(&unseen(&app, 2).await, trio)["messages"]),
        ["hello both"]
    );
    wait_until_nothing_unseen(&app, 2).await;
    assert_eq!(
        texts(&room_in(&unseen(&app, 3).await, trio)["messages"]),
        ["hello both"]
    );
    // Nobody has their own messages unseen.
    assert_eq!(room_in(&unseen(&app, 1).await, trio)["messages"], json!([]));
}

async fn unseen_for_a_user_without_rooms_is_empty(app: TestApp) {
    app.create_room(1, "elsewhere", &["user_2"]).await;
    assert!(unseen(&app, 15).await.is_empty());
    assert_eq!(
        data(get(&app, "/chat/messages/unseen?user_id=15").await),
        json!([])
    );
}

// ---------------------------------------------------------------------------
// The old scripts, and general behaviour
// ---------------------------------------------------------------------------

/// The calls of the legacy curl documentation, in order.
async fn scripted_legacy_session(app: TestApp) {
    // curl -X POST /users/ -d '{"username": ..., "profile": {"status_msg": 5}}'
    let user = create_user(
        &app,
        json!({"username": "newbie", "password": "s3cret!", "first_name": "New",
               "last_name": "Bie", "email": "newbie@example.org",
               "profile": {"status": "Online", "status_msg": 5}}),
    )
    .await;
    let newbie = user["id"].as_i64().unwrap();
    assert_eq!(user["profile"]["status_msg"], "5");

    // curl -X POST /chat/chatroom/ -d '{"room_name": "family", "room_member": [...]}'
    let room = data(
        post(
            &app,
            "/chat/chatroom/",
            json!({"room_name": "family",
                   "room_member": [{"username": "user_7"}, {"username": "newbie"}]}),
        )
        .await,
    );
    let family = room["id"].as_i64().unwrap();
    assert_room(&room, family, "family", &["user_7", "newbie"]);

    // curl -X PUT /chat/chatroom/<id>/?user_id=9
    let (status, body) = put_empty(&app, &format!("/chat/chatroom/{family}/?user_id=9")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": 200, "message": "HTTP_200_OK"}));

    // curl -X POST /chat/user/3/ -d '{"from": 2, ...}' and back.
    let there = finished(&app, &post_direct(&app, 2, 3, "hey man").await).await;
    let back = finished(&app, &post_direct(&app, 3, 2, "hey you").await).await;
    assert_eq!(there["state"], "SUCCESS", "{there}");
    assert_eq!(back["state"], "SUCCESS", "{back}");
    assert_eq!(there["result"]["room"]["id"], back["result"]["room"]["id"]);
    assert_eq!(there["result"]["room"]["room_name"], "user_2 - user_3");
    let direct = there["result"]["room"]["id"].as_i64().unwrap();

    // curl -X POST /chat/group/<id>/ -d '{"from": 9, "text": "hi fam"}'
    let group_task = post_group(&app, 9, family, "hi fam").await;
    let sent = finished(&app, &group_task).await;
    assert_eq!(sent["state"], "SUCCESS", "{sent}");

    // curl /chat/messages/<id>/?user_id=7
    let history = data(get(&app, &format!("/chat/messages/{family}/?user_id=7")).await);
    assert_room_with_messages(&history, family, "family", &["user_7", "user_9", "newbie"]);
    assert_eq!(texts(&history["messages"]), ["hi fam"]);
    assert_message(
        &history["messages"][0],
        family,
        "hi fam",
        Some((9, "user_9")),
    );

    // curl /chat/messages/unseen/?user_id=<newbie> and ?user_id=2
    let rooms = unseen(&app, newbie).await;
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(texts(&room_in(&rooms, family)["messages"]), ["hi fam"]);
    let rooms = unseen(&app, 2).await;
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(texts(&room_in(&rooms, direct)["messages"]), ["hey you"]);

    // curl /chat/task_state/<task id>
    let state = task_answer(get(&app, &format!("/chat/task_state/{group_task}")).await);
    assert_eq!(state["state"], "SUCCESS");
    assert_eq!(state["result"]["text"], "hi fam");
    assert_eq!(state["result"]["room"]["id"], family);
    assert_eq!(state["result"]["msg_from"]["username"], "user_9");
}

async fn answers_are_json(app: TestApp) {
    for path in [
        "/users/",
        "/users/3/",
        "/users/9999/",
        "/chat/chatroom/",
        "/chat/chatroom/9999/",
        "/chat/chatroom/?user_id=abc",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type:?}"
        );
    }
}

async fn unexpected_failures_hide_their_details(app: TestApp) {
    use sea_orm::ConnectionTrait;
    app.db
        .execute_unprepared("ALTER TABLE memberships RENAME TO memberships_hidden")
        .await
        .unwrap();
    let answer = get(&app, "/chat/chatroom/?user_id=2").await;
    app.db
        .execute_unprepared("ALTER TABLE memberships_hidden RENAME TO memberships")
        .await
        .unwrap();
    let msg = refused(answer, 500).to_lowercase();
    for leak in ["memberships", "table", "relation", "sql"] {
        assert!(!msg.contains(leak), "{msg}");
    }
    // Healthy again.
    assert_eq!(
        data(get(&app, "/chat/chatroom/?user_id=2").await),
        json!([])
    );
}

crate::scenarios!(
    // Users
    users_list_is_a_plain_array_ordered_by_id,
    user_object_matches_the_contract,
    users_paths_work_without_trailing_slash,
    unknown_users_are_not_found,
    create_user_answers_201_with_the_user,
    create_user_with_an_empty_profile_uses_defaults,
    create_user_requires_username_password_and_profile,
    invalid_users_list_every_bad_field,
    duplicate_usernames_are_refused,
    email_must_be_valid_or_empty,
    numeric_status_msg_is_stored_as_a_string,
    put_replaces_the_user_and_profile,
    patch_updates_only_the_given_fields,
    delete_user_answers_204,
    deleted_users_messages_stay_without_a_sender,
    users_list_filters_match_exactly,
    user_list_shows_every_write_at_once,
    user_list_cache_is_shared_between_instances,
    passwords_never_leave_the_server,
    // Chat rooms
    group_room_list_shows_only_ids_and_names,
    room_list_of_a_user_has_members_and_direct_rooms,
    create_room_answers_the_room_object,
    create_room_accepts_a_form_body,
    create_room_refuses_bad_bodies,
    a_room_without_user_id_shows_only_group_rooms,
    a_room_with_user_id_is_shown_to_members_only,
    joining_a_room,
    leaving_a_room_keeps_history_and_allows_rejoining,
    the_last_member_leaving_deletes_the_room,
    user_id_must_be_a_known_positive_integer,
    user_id_is_required_where_the_contract_names_it,
    // Sends and task states
    a_direct_message_answers_a_task_id_at_once,
    a_group_message_shows_the_room_and_the_senders_memberships,
    task_state_is_exactly_state_and_result,
    unknown_tasks_are_not_found,
    group_sends_by_non_members_fail,
    texts_out_of_bounds_are_refused_at_once,
    sends_refuse_bad_bodies,
    sends_need_a_known_positive_sender,
    sends_accept_form_bodies_and_paths_without_slash,
    sends_to_unknown_targets_store_nothing,
    // Room history and unseen messages
    room_messages_list_the_history_with_senders,
    reading_a_room_marks_its_messages_seen,
    unseen_lists_every_room_of_the_user,
    unseen_marks_are_per_user,
    unseen_for_a_user_without_rooms_is_empty,
    // General
    scripted_legacy_session,
    answers_are_json,
    unexpected_failures_hide_their_details,
);
