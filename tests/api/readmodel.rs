//! The read path: statement counts of the core queries (cold and hot), and
//! the hot-room read model staying right across instances, through a Redis
//! restart.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with, start};

/// The core room query: name, members, the newest 50 messages with senders.
const ROOM: &str = "query($id: ID!) { room(id: $id) { name members { username }
    messages(last: 50) { totalCount edges { node { id text sentAt sender { username } } } } } }";

async fn rest(app: &TestApp, path: &str) -> Value {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

async fn statements_of<F: Future>(app: &TestApp, read: F) -> (u64, F::Output) {
    let before = app.statements.get();
    let output = read.await;
    (app.statements.get() - before, output)
}

/// A room with 60 messages, all sent by user 1 (so reading it queues no
/// mark-seen work that would add statements of its own).
async fn busy_room(app: &TestApp) -> i64 {
    let room = app.create_room(1, "busy", &["user_2", "user_3"]).await;
    for n in 0..60 {
        app.store_message(room, 1, &format!("m{n}")).await;
    }
    room
}

/// What a hot read may cost: nothing with Redis; the versions' one
/// statement when they live in the database.
fn hot_cost(app: &TestApp) -> u64 {
    if app.config.redis_url.is_some() { 0 } else { 1 }
}

async fn core_queries_cost_few_statements_hot_and_cold(app: TestApp) {
    let room = busy_room(&app).await;
    let vars = json!({"id": room});
    let (cold, data) = statements_of(&app, app.ok_as(Some(1), ROOM, vars.clone())).await;
    let messages = &data["room"]["messages"];
    assert_eq!(messages["edges"].as_array().unwrap().len(), 50);
    assert_eq!(messages["totalCount"], 60);
    assert_eq!(messages["edges"][49]["node"]["text"], "m59");
    assert_eq!(messages["edges"][0]["node"]["sender"]["username"], "user_1");
    assert_eq!(data["room"]["members"].as_array().unwrap().len(), 3);
    // The versions, then the room with its members and the messages with
    // their senders (the window holds all 60, so totalCount is known).
    assert_eq!(cold, hot_cost(&app) + 2, "cold room query");
    let (hot, again) = statements_of(&app, app.ok_as(Some(1), ROOM, vars.clone())).await;
    assert_eq!(again, data);
    assert_eq!(hot, hot_cost(&app), "hot room query");

    // The legacy history and room list, hot.
    let path = format!("/chat/messages/{room}/?user_id=1");
    let first = rest(&app, &path).await;
    assert_eq!(first["data"]["messages"].as_array().unwrap().len(), 60);
    let (hot, again) = statements_of(&app, rest(&app, &path)).await;
    assert_eq!(again, first);
    assert_eq!(hot, hot_cost(&app), "hot legacy history");
    let first = rest(&app, "/chat/chatroom/?user_id=2").await;
    let (hot, again) = statements_of(&app, rest(&app, "/chat/chatroom/?user_id=2")).await;
    assert_eq!(again, first);
    assert_eq!(hot, hot_cost(&app), "hot legacy room list");
}

async fn the_room_query_costs_two_statements_without_the_model(app: TestApp) {
    let room = busy_room(&app).await;
    let query = "query($id: ID!) { room(id: $id) { name members { username }
        messages(last: 50) { edges { node { id text sentAt sender { username } } } } } }";
    let vars = json!({"id": room});
    app.ok_as(Some(1), query, vars.clone()).await;
    let (cost, data) = statements_of(&app, app.ok_as(Some(1), query, vars)).await;
    assert_eq!(data["room"]["messages"]["edges"][49]["node"]["text"], "m59");
    assert_eq!(cost, 2, "room query without the read model");
    // Users: one statement (no profiles unless asked for), then kept at
    // the users' version.
    let users = "{ users(first: 15) { edges { node { id username } } } }";
    let (cost, first) = statements_of(&app, app.ok(users, json!({}))).await;
    assert_eq!(cost, hot_cost(&app) + 1, "users page");
    let (cost, again) = statements_of(&app, app.ok(users, json!({}))).await;
    assert_eq!((cost, again), (hot_cost(&app), first), "users page, again");
}

mod costs {
    use super::*;

    crate::scenarios!(config = crate::helpers::quiet; core_queries_cost_few_statements_hot_and_cold);
}

fn without_model(config: &mut chat_gateway::config::Config) {
    crate::helpers::quiet(config);
    config.read_model_bytes = 0;
}

mod costs_without_model {
    use super::*;

    crate::scenarios!(config = super::without_model; the_room_query_costs_two_statements_without_the_model);
}

fn texts(data: &Value) -> Vec<String> {
    data["room"]["messages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["text"].as_str().unwrap().to_owned())
        .collect()
}

fn members(data: &Value) -> Vec<String> {
    data["room"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap().to_owned())
        .collect()
}

/// What instance `b` shows of the room, through GraphQL and REST; both
/// must agree.
async fn seen_by(b: &TestApp, room: i64) -> (Vec<String>, Vec<String>) {
    let data = b.ok_as(Some(1), ROOM, json!({"id": room})).await;
    let history = rest(b, &format!("/chat/messages/{room}/?user_id=1")).await;
    let rest_texts: Vec<String> = history["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    let rest_members: Vec<String> = history["data"]["room_member"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rest_texts, texts(&data), "REST and GraphQL disagree");
    assert_eq!(rest_members, members(&data), "REST and GraphQL disagree");
    (texts(&data), members(&data))
}

async fn send_and_wait(a: &TestApp, room: i64, text: &str) {
    let task = a.send_group(1, room, text).await;
    assert_eq!(a.finished_task(&task).await["state"], "SUCCESS");
}

/// Rename user 4 on `a`; `b`'s user lists (REST and GraphQL) show the new
/// name at once.
async fn rename_seen(a: &TestApp, b: &TestApp, name: &str) {
    let response = a
        .client
        .patch(a.url("/users/4/"))
        .json(&json!({"first_name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let list = rest(b, &format!("/users/?first_name={name}")).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{name}: {list}");
    let all = rest(b, "/users/").await;
    assert_eq!(all[3]["first_name"], name, "{name}");
    let data = b
        .ok_as(
            Some(1),
            "{ users(first: 5) { edges { node { firstName } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["users"]["edges"][3]["node"]["firstName"], name);
}

async fn set_membership(a: &TestApp, user: i64, room: i64, join: bool) {
    let field = if join { "joinRoom" } else { "leaveRoom" };
    a.ok_as(
        Some(user),
        &format!("mutation($id: ID!) {{ {field}(roomId: $id) {{ __typename }} }}"),
        json!({"id": room}),
    )
    .await;
}

/// Instance A writes (sends through its worker, joins, leaves); instance B's
/// next read shows every write, before, during and after a Redis outage.
async fn two_instances_through_a_redis_restart(backend: Backend) {
    let Some(mut redis) = crate::redis_server::RedisServer::start() else {
        eprintln!("no redis-server binary: Redis restart not tested");
        return;
    };
    let url = redis.url();
    let Some(a) = spawn_app_with(backend, |c| c.redis_url = Some(url.clone())).await else {
        return;
    };
    let b = start(a.config.clone(), a.backend, None).await;
    let room = a.create_room(1, "shared", &["user_2"]).await;
    assert_eq!(
        seen_by(&b, room).await,
        (vec![], vec!["user_1".into(), "user_2".into()])
    );

    send_and_wait(&a, room, "one").await;
    set_membership(&a, 3, room, true).await;
    let (texts, members) = seen_by(&b, room).await;
    assert_eq!(texts, ["one"]);
    assert_eq!(members, ["user_1", "user_2", "user_3"]);
    let list = rest(&b, "/chat/chatroom/?user_id=3").await;
    assert_eq!(list["data"][0]["id"], room);
    rename_seen(&a, &b, "before").await;

    redis.stop();
    rename_seen(&a, &b, "during").await;
    send_and_wait(&a, room, "two").await;
    set_membership(&a, 3, room, false).await;
    let (texts, members) = seen_by(&b, room).await;
    assert_eq!(texts, ["one", "two"]);
    assert_eq!(members, ["user_1", "user_2"]);

    redis.restart();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // B's views were built before the restart; the counters Redis lost must
    // not make them current again.
    let (texts, _) = seen_by(&b, room).await;
    assert_eq!(texts, ["one", "two"]);
    send_and_wait(&a, room, "three").await;
    set_membership(&a, 3, room, true).await;
    let (texts, members) = seen_by(&b, room).await;
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(members, ["user_1", "user_2", "user_3"]);
    let list = rest(&b, "/chat/chatroom/?user_id=3").await;
    assert_eq!(list["data"][0]["id"], room);
    rename_seen(&a, &b, "after").await;
    rename_seen(&b, &a, "back").await;
    // And A reads its own writes the same way.
    assert_eq!(seen_by(&a, room).await, seen_by(&b, room).await);
}

/// User writes on one instance, read at once on the other, back to back:
/// each write answers only after every instance that trusts its heard
/// versions has heard it.
async fn user_writes_read_at_once_elsewhere(backend: Backend) {
    let Some(a) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    if a.config.redis_url.is_none() {
        return;
    }
    let b = start(a.config.clone(), a.backend, None).await;
    // Warm both instances' lists, so stale ones would be there to serve.
    rest(&a, "/users/").await;
    rest(&b, "/users/").await;
    for n in 0..30 {
        let (writer, reader) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        rename_seen(writer, reader, &format!("n{n}")).await;
    }
    // Redis loses this deployment's keys without dropping a connection:
    // the instances' leases are not in it any more, and their counters
    // start again.
    let client = redis::Client::open(a.config.redis_url.clone().unwrap()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", a.config.redis_key_prefix))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    redis::cmd("DEL")
        .arg(keys)
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    for n in 0..6 {
        let (writer, reader) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        rename_seen(writer, reader, &format!("lost{n}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_writes_read_at_once_elsewhere_on_sqlite() {
    user_writes_read_at_once_elsewhere(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_writes_read_at_once_elsewhere_on_postgres() {
    user_writes_read_at_once_elsewhere(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_through_a_redis_restart_on_sqlite() {
    two_instances_through_a_redis_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_through_a_redis_restart_on_postgres() {
    two_instances_through_a_redis_restart(Backend::Postgres).await;
}
