//! Subscriptions over websockets: both subprotocols, the graphql-transport-ws
//! rules, unread messages (who gets what, resume with `after`, no
//! duplicates), room messages, task updates, and delivery across instances.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, spawn_app_with, start},
    ws::{Next, Socket},
};

const TRANSPORT: &str = "graphql-transport-ws";
const LEGACY: &str = "graphql-ws";
const UNREAD: &str = "subscription($after: String) { unreadMessages(after: $after) {
    id text cursor sender { username } room { name } } }";

pub(crate) fn fast(config: &mut chat_gateway::config::Config) {
    config.unread_recheck_secs = 1;
    config.ws_init_timeout_secs = 1;
    config.outbox_sweep_ms = 200;
}

async fn unread_socket(app: &TestApp, user: i64) -> Socket {
    let mut socket = Socket::connect(app, TRANSPORT).await;
    socket.init(json!({"userId": user})).await;
    socket.subscribe("unread", UNREAD, json!({})).await;
    // The subscription is live once the server has read its rooms; a round
    // trip through ping/pong orders us after that.
    socket.send(json!({"type": "ping"})).await;
    let pong = socket.next().await;
    assert_eq!(pong["type"], "pong", "{pong}");
    socket
}

fn text_of(message: &Value) -> &str {
    message["payload"]["data"]["unreadMessages"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("an unread message: {message}"))
}

async fn unread_messages_reach_members_only(app: TestApp) {
    let room = app.create_room(1, "family", &["user_2"]).await;
    let mut member = unread_socket(&app, 2).await;
    let mut sender = unread_socket(&app, 1).await;
    let mut outsider = unread_socket(&app, 3).await;

    let task = app.send_group(1, room, "hi fam").await;
    let pushed = member.next().await;
    assert_eq!(pushed["type"], "next");
    assert_eq!(pushed["id"], "unread");
    assert_eq!(text_of(&pushed), "hi fam");
    let node = &pushed["payload"]["data"]["unreadMessages"];
    assert_eq!(node["sender"]["username"], "user_1");
    assert_eq!(node["room"]["name"], "family");
    assert!(node["cursor"].is_string());
    assert_eq!(app.finished_task(&task).await["state"], "SUCCESS");

    // Through at least one re-check: nothing for the sender or outsiders,
    // and nothing twice for the member.
    sender.quiet_for(Duration::from_millis(1500)).await;
    outsider.quiet_for(Duration::from_millis(100)).await;
    member.quiet_for(Duration::from_millis(100)).await;

    // A first direct message creates a room the recipient was not in when
    // subscribing: it arrives too.
    app.send_direct(3, 2, "psst").await;
    assert_eq!(text_of(&member.next().await), "psst");
}

async fn reconnecting_with_after_misses_nothing(app: TestApp) {
    let room = app.create_room(1, "r", &["user_2"]).await;
    let mut socket = unread_socket(&app, 2).await;
    app.send_group(1, room, "one").await;
    let first = socket.next().await;
    let cursor = first["payload"]["data"]["unreadMessages"]["cursor"].clone();
    drop(socket);

    // Sent while the client was away.
    for text in ["two", "three"] {
        let task = app.send_group(1, room, text).await;
        app.finished_task(&task).await;
    }
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.init(json!({"userId": 2})).await;
    socket
        .subscribe("again", UNREAD, json!({"after": cursor}))
        .await;
    let texts: Vec<String> = vec![
        text_of(&socket.next().await).to_owned(),
        text_of(&socket.next().await).to_owned(),
    ];
    assert_eq!(texts, ["two", "three"]);
    app.send_group(1, room, "four").await;
    assert_eq!(text_of(&socket.next().await), "four");
    socket.quiet_for(Duration::from_millis(1500)).await;
}

async fn legacy_graphql_ws_protocol(app: TestApp) {
    let room = app.create_room(1, "r", &["user_4"]).await;
    let mut socket = Socket::connect(&app, LEGACY).await;
    socket
        .send(json!({"type": "connection_init", "payload": {"userId": 4}}))
        .await;
    assert_eq!(socket.next().await["type"], "connection_ack");
    socket
        .send(json!({"id": "a", "type": "start", "payload": {"query": UNREAD}}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.send_group(1, room, "legacy hello").await;
    let data = socket.next().await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["id"], "a");
    assert_eq!(
        data["payload"]["data"]["unreadMessages"]["text"],
        "legacy hello"
    );
    socket.send(json!({"id": "a", "type": "stop"})).await;
    let complete = socket.next().await;
    assert_eq!(complete["type"], "complete");
    assert_eq!(complete["id"], "a");
}

async fn transport_ws_rules(app: TestApp) {
    // No connection_init in time: 4408.
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    assert_eq!(socket.closed_with().await, Some(4408));

    // Subscribe before the ack: 4401.
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.subscribe("1", UNREAD, json!({})).await;
    assert_eq!(socket.closed_with().await, Some(4401));

    // A refused identity: 4403.
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket
        .send(json!({"type": "connection_init", "payload": {"userId": 9999}}))
        .await;
    assert_eq!(socket.closed_with().await, Some(4403));
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket
        .send(json!({"type": "connection_init", "payload": {"authorization": "Bearer nope"}}))
        .await;
    assert_eq!(socket.closed_with().await, Some(4403));

    // A second init: 4429.
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.init(json!({"userId": 1})).await;
    socket
        .send(json!({"type": "connection_init", "payload": {}}))
        .await;
    assert_eq!(socket.closed_with().await, Some(4429));

    // A duplicate active id: 4409.
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.init(json!({"userId": 1})).await;
    socket.subscribe("same", UNREAD, json!({})).await;
    socket.subscribe("same", UNREAD, json!({})).await;
    assert_eq!(socket.closed_with().await, Some(4409));

    // Not a valid message: 4400.
    for bad in [
        "not json",
        "{\"no\": \"type\"}",
        "{\"type\": \"bogus\"}",
        "{\"type\": \"subscribe\"}",
    ] {
        let mut socket = Socket::connect(&app, TRANSPORT).await;
        socket.init(json!({"userId": 1})).await;
        socket.send_raw(bad).await;
        assert_eq!(socket.closed_with().await, Some(4400), "{bad}");
    }
}

async fn operation_errors_keep_the_socket_open(app: TestApp) {
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.init(json!({})).await;

    // Anonymous: unread messages are refused, clearly.
    socket.subscribe("mine", UNREAD, json!({})).await;
    let error = socket.next().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "mine");
    assert_eq!(error["payload"][0]["extensions"]["code"], "UNAUTHENTICATED");

    // Invalid operation: an error for it.
    socket
        .subscribe("bad", "subscription { noSuchField }", json!({}))
        .await;
    let error = socket.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["id"], "bad");

    // Still open: ping, and queries work over the socket too.
    socket
        .send(json!({"type": "ping", "payload": {"n": 1}}))
        .await;
    let pong = socket.next().await;
    assert_eq!(pong, json!({"type": "pong", "payload": {"n": 1}}));
    socket
        .subscribe("q", "{ users(first: 1) { totalCount } }", json!({}))
        .await;
    let next = socket.next().await;
    assert_eq!(next["type"], "next");
    assert_eq!(next["payload"]["data"]["users"]["totalCount"], 15);
    assert_eq!(socket.next().await, json!({"type": "complete", "id": "q"}));
}

async fn ids_can_be_reused_once_complete(app: TestApp) {
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.init(json!({"userId": 1})).await;
    for round in 0..5 {
        socket
            .subscribe("same", "{ viewer { username } }", json!({}))
            .await;
        let next = socket.next().await;
        assert_eq!(next["type"], "next", "round {round}: {next}");
        assert_eq!(next["payload"]["data"]["viewer"]["username"], "user_1");
        assert_eq!(
            socket.next().await,
            json!({"type": "complete", "id": "same"})
        );
    }
    // A stopped subscription frees its id too.
    socket.subscribe("live", UNREAD, json!({})).await;
    socket.send(json!({"type": "complete", "id": "live"})).await;
    socket.subscribe("live", UNREAD, json!({})).await;
    socket.send(json!({"type": "ping"})).await;
    assert_eq!(socket.next().await["type"], "pong");
}

async fn room_messages_are_for_members(app: TestApp) {
    let room = app.create_room(5, "r", &["user_6"]).await;
    let query = "subscription($r: ID!) { roomMessages(roomId: $r) { text sender { username } } }";
    let mut outsider = Socket::connect(&app, TRANSPORT).await;
    outsider.init(json!({"userId": 7})).await;
    outsider.subscribe("r", query, json!({"r": room})).await;
    let refused = outsider.next().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "FORBIDDEN");

    let mut member = Socket::connect(&app, TRANSPORT).await;
    member.init(json!({"userId": 5})).await;
    member.subscribe("r", query, json!({"r": room})).await;
    member.send(json!({"type": "ping"})).await;
    assert_eq!(member.next().await["type"], "pong");
    app.send_group(6, room, "from six").await;
    app.send_group(5, room, "from five").await;
    let mut texts = Vec::new();
    for _ in 0..2 {
        let next = member.next().await;
        texts.push(
            next["payload"]["data"]["roomMessages"]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    texts.sort();
    assert_eq!(texts, ["from five", "from six"]);
}

async fn task_updates_until_finished(app: TestApp) {
    let room = app.create_room(8, "r", &[]).await;
    let query = "subscription($id: ID!) { taskUpdated(id: $id) { state error { kind } } }";
    for (sender, expected) in [(8, "SUCCESS"), (9, "FAILURE")] {
        let task = app.send_group(sender, room, "tracked").await;
        let mut socket = Socket::connect(&app, TRANSPORT).await;
        socket.init(json!({"userId": sender})).await;
        socket.subscribe("t", query, json!({"id": task})).await;
        let mut states = Vec::new();
        loop {
            let message = socket.next().await;
            if message["type"] == "complete" {
                break;
            }
            assert_eq!(message["type"], "next", "{message}");
            states.push(
                message["payload"]["data"]["taskUpdated"]["state"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(
            states.last().map(String::as_str),
            Some(expected),
            "{states:?}"
        );
        let mut sorted = states.clone();
        sorted.dedup();
        assert_eq!(sorted, states, "no state twice");
    }
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.init(json!({"userId": 8})).await;
    socket
        .subscribe("t", query, json!({"id": uuid::Uuid::new_v4()}))
        .await;
    let error = socket.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["payload"][0]["extensions"]["code"], "NOT_FOUND");
}

async fn websocket_also_on_graphql_ws_path(app: TestApp) {
    let mut socket = Socket::connect_to(&app, "/graphql/ws", TRANSPORT).await;
    socket.init(json!({"userId": 1})).await;
    socket.send(json!({"type": "ping"})).await;
    assert_eq!(socket.next().await["type"], "pong");
}

crate::scenarios!(
    config = crate::subscriptions::fast;
    unread_messages_reach_members_only,
    reconnecting_with_after_misses_nothing,
    legacy_graphql_ws_protocol,
    transport_ws_rules,
    operation_errors_keep_the_socket_open,
room_messages_are_for_members,
    ids_can_be_reused_once_complete,
    task_updates_until_finished,
    websocket_also_on_graphql_ws_path,
);

/// Two gateways on one database: subscribe on one, send on the other. With
/// Redis the message is pushed at once; without it, the periodic re-check
/// delivers it.
async fn across_instances(backend: Backend) {
    let Some(a) = spawn_app_with(backend, |c| {
        c.unread_recheck_secs = if c.redis_url.is_some() { 30 } else { 1 };
    })
    .await
    else {
        return;
    };
    let b = start(a.config.clone(), a.backend, None).await;
    let room = a.create_room(1, "shared", &["user_2"]).await;
    let mut socket = unread_socket(&a, 2).await;
    b.send_group(1, room, "from the other instance").await;
    let wait = Duration::from_secs(if a.config.redis_url.is_some() { 3 } else { 8 });
    match socket.next_within(wait).await {
        Next::Message(message) => assert_eq!(text_of(&message), "from the other instance"),
        other => panic!("nothing arrived within {wait:?}: {other:?}"),
    }
    socket.quiet_for(Duration::from_millis(1200)).await;
}

mod across {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::across_instances(crate::helpers::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::across_instances(crate::helpers::Backend::Postgres).await;
    }
}

/// Joining and leaving take effect on a live subscription at once (the
/// re-check is far away, so only the membership events can do it).
async fn membership_changes_reach_live_subscriptions(app: TestApp) {
    let room = app.create_room(1, "club", &[]).await;
    let mut socket = unread_socket(&app, 4).await;
    app.ok_as(
        Some(4),
        "mutation($r: ID!) { joinRoom(roomId: $r) { id } }",
        json!({"r": room}),
    )
    .await;
    app.send_group(1, room, "welcome").await;
    match socket.next_within(Duration::from_secs(3)).await {
        Next::Message(message) => assert_eq!(text_of(&message), "welcome"),
        other => panic!("the new member got nothing: {other:?}"),
    }
    app.ok_as(
        Some(4),
        "mutation($r: ID!) { leaveRoom(roomId: $r) { roomDeleted } }",
        json!({"r": room}),
    )
    .await;
    let task = app.send_group(1, room, "after you left").await;
    app.finished_task(&task).await;
    socket.quiet_for(Duration::from_millis(800)).await;
}

mod live {
    crate::scenarios!(
        config = |c: &mut chat_gateway::config::Config| c.unread_recheck_secs = 30;
        membership_changes_reach_live_subscriptions,
    );
    use super::*;
}

/// A subscriber that stops reading holds up only itself: sends go on, the
/// other subscribers get every message as it is stored, and once the slow
/// one reads again its subscriptions (which fell far behind the event bus
/// meanwhile) catch up from the database: every message, each once.
async fn a_slow_reader_holds_up_only_itself(app: TestApp) {
    let room = app.create_room(1, "busy", &["user_2", "user_3"]).await;
    let mut slow = slow_reader(&app, 2).await;
    slow.subscribe(
        "room",
        "subscription($r: ID!) { roomMessages(roomId: $r) { text } }",
        json!({"r": room}),
    )
    .await;
    slow.send(json!({"type": "ping"})).await;
    assert_eq!(slow.next().await["type"], "pong");
    let mut fast = unread_socket(&app, 3).await;
    let sends = send_many(&app, room, FLOOD);
    let fast_reads = receive_all(&mut fast, &["unread"], FLOOD);
    let (sent, _) = tokio::join!(sends, fast_reads);
    assert_eq!(sent, FLOOD);

    receive_all(&mut slow, &["unread", "room"], FLOOD).await;
    slow.quiet_for(Duration::from_millis(500)).await;
}

/// Read until each of the subscriptions `ids` delivered `count` distinct
/// messages; none twice.
async fn receive_all(socket: &mut Socket, ids: &[&str], count: usize) {
    let mut seen: std::collections::HashMap<String, std::collections::HashSet<String>> = ids
        .iter()
        .map(|id| (id.to_string(), Default::default()))
        .collect();
    while seen.values().any(|texts| texts.len() < count) {
        let message = socket.next().await;
        if message["type"] == "ping" {
            continue;
        }
        assert_eq!(message["type"], "next", "{message}");
        let id = message["id"].as_str().expect("an operation id");
        let data = message["payload"]["data"].as_object().expect("data");
        let text = data.values().next().expect("one field")["text"]
            .as_str()
            .expect("a text");
        let index = text[..4].to_owned();
        let texts = seen.get_mut(id).expect("a known operation");
        assert!(
            texts.insert(index.clone()),
            "{id}: message {index} arrived twice"
        );
    }
}

/// A client that takes nothing for `WS_SEND_TIMEOUT_SECS` is disconnected
/// (the server holds no more for it than its socket buffers).
async fn a_reader_that_stalls_too_long_is_dropped(app: TestApp) {
    let room = app.create_room(1, "busy", &["user_2"]).await;
    let mut slow = slow_reader(&app, 2).await;
    assert_eq!(send_many(&app, room, FLOOD).await, FLOOD);
    // The subscription may still be catching up on a loaded machine: give it
    // time to fill the socket, then far longer than the send timeout.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut received = 0;
    loop {
        match slow.next_within(Duration::from_secs(10)).await {
            Next::Message(_) => received += 1,
            Next::Closed(_) => break,
            Next::Nothing => panic!("the stalled connection stayed open after {received}"),
        }
    }
    assert!(received < FLOOD, "all {received} messages arrived");
}

/// Messages that together hold far more than the socket buffers (about
/// 3 KB each, 9 MB in all; loopback send buffers grow to 4 MB).
const FLOOD: usize = 3000;

/// An unread subscriber on a socket with a small receive buffer, that
/// reads nothing until told to.
async fn slow_reader(app: &TestApp, user: i64) -> Socket {
    let mut slow = Socket::connect_with_receive_buffer(app, TRANSPORT, 4096).await;
    slow.init(json!({"userId": user})).await;
    slow.subscribe("unread", UNREAD, json!({})).await;
    slow.send(json!({"type": "ping"})).await;
    assert_eq!(slow.next().await["type"], "pong");
    slow
}

/// Send `count` numbered messages, 8 at a time; returns how many were sent.
async fn send_many(app: &TestApp, room: i64, count: usize) -> usize {
    use futures::StreamExt;
    let filler = "\u{20ac}".repeat(1000);
    futures::stream::iter(0..count)
        .map(|i| {
            let text = format!("{i:04} {filler}");
            async move { app.send_group(1, room, &text).await }
        })
        .buffer_unordered(8)
        .count()
        .await
}

mod slow {
    crate::scenarios!(
        config = |c: &mut chat_gateway::config::Config| {
            super::fast(c);
            c.ws_send_timeout_secs = 300;
            // No keep-alive ping in the final moment of silence.
            c.ws_keepalive_secs = 300;
            // Thousands of sends from one user, on purpose, on a machine
            // that may be running the whole suite.
            c.rate_limit_sends = "off".parse().unwrap();
            c.graphql_timeout_ms = 120_000;
        };
        a_slow_reader_holds_up_only_itself,
    );
    use super::*;
}

mod stalled {
    crate::scenarios!(
        config = |c: &mut chat_gateway::config::Config| {
            c.ws_send_timeout_secs = 1;
            c.rate_limit_sends = "off".parse().unwrap();
            c.graphql_timeout_ms = 120_000;
        };
        a_reader_that_stalls_too_long_is_dropped,
    );
    use super::*;
}

/// Clients that start many reads over a websocket (replays, searches) and
/// never read the answers hold no database connection: the pool stays free
/// for everyone else (a bystander's queries and sends all succeed),
/// whatever those reads were doing when their sockets filled.
async fn stalled_readers_hold_no_database_connection(app: TestApp) {
    use futures::StreamExt;
    let room = app.create_room(1, "backlog", &["user_2"]).await;
    let filler = "\u{20ac}".repeat(1000);
    let app = &app;
    futures::stream::iter(0..300)
        .map(|i| {
            let text = format!("backlog {i:04} {filler}");
            async move { app.store_message(room, 1, &text).await }
        })
        .buffer_unordered(8)
        .count()
        .await;
    let start = chat_gateway::domain::pagination::encode_cursor(0);
    let events = "subscription($r: ID!, $after: String) { roomEvents(roomId: $r, after: $after) {
        ... on MessageStoredEvent { cursor message { text sender { username } } } } }";
    // Each answer is hundreds of kB: a few fill a socket, and the rest
    // finish their reads while it is full.
    let search = "query { searchMessages(query: \"backlog\", first: 100) {
        edges { node { text } } } }";
    let mut stalled = Vec::new();
    for user in [1, 2, 1, 2] {
        let mut socket = Socket::connect_with_receive_buffer(app, TRANSPORT, 4096).await;
        socket.init(json!({"userId": user})).await;
        for n in 0..10 {
            socket
                .subscribe(&format!("e{n}"), events, json!({"r": room, "after": start}))
                .await;
            socket
                .subscribe(&format!("u{n}"), UNREAD, json!({"after": start}))
                .await;
        }
        for n in 0..40 {
            socket.subscribe(&format!("s{n}"), search, json!({})).await;
        }
        stalled.push(socket);
    }
    // The reads run until every socket is full.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..10 {
        let data = app.ok_as(Some(3), "{ viewer { id } }", json!({})).await;
        assert_eq!(data["viewer"]["id"], "3");
    }
    let task = app.send_group(1, room, "still flowing").await;
    assert_eq!(app.finished_task(&task).await["state"], "SUCCESS");
    drop(stalled);
}

mod stalled_pool {
    crate::scenarios!(
        config = |c: &mut chat_gateway::config::Config| {
            c.ws_send_timeout_secs = 300;
            c.ws_keepalive_secs = 300;
            c.rate_limit_ws_operations = "off".parse().unwrap();
            c.rate_limit_searches = "off".parse().unwrap();
            c.graphql_timeout_ms = 120_000;
        };
        stalled_readers_hold_no_database_connection,
    );
    use super::*;
}

/// A `worker` process (its own event bus) stores the message; the gateway's
/// subscriber gets it through Redis, long before any re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_worker_publishes_through_redis() {
    use chat_gateway::jobs::{
        faktory::{FaktoryConfig, run_worker},
        worker::JobContext,
    };
    if std::env::var("TEST_REDIS_URL").is_err() {
        eprintln!("TEST_REDIS_URL is not set: cross-process events not tested");
        return;
    }
    let server = faktory_test_server::FaktoryServer::start(None).await;
    let backend = if std::env::var("TEST_DATABASE_URL").is_ok() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let app = spawn_app_with(backend, |c| {
        c.faktory_url = Some(server.url());
        c.unread_recheck_secs = 60;
        c.outbox_sweep_ms = 200;
    })
    .await
    .unwrap();
    // The worker process: its own connections, its own bus.
    let config = app.config.clone();
    let redis = chat_gateway::app::connect_redis(&config).await.unwrap();
    let db = chat_gateway::db::connect(&config).await.unwrap().0;
    let ctx = JobContext {
        events: chat_gateway::app::event_bus(&config, redis.as_ref(), &db),
        db,
    };
    let faktory =
        FaktoryConfig::from_url(&server.url(), "chat", Duration::from_secs(5), 3).unwrap();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(run_worker(
        faktory,
        ctx,
        2,
        stopping,
        Duration::from_secs(2),
    ));

    let room = app.create_room(1, "r", &["user_2"]).await;
    let mut socket = unread_socket(&app, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.send_group(1, room, "via the worker").await;
    match socket.next_within(Duration::from_secs(5)).await {
        Next::Message(message) => assert_eq!(text_of(&message), "via the worker"),
        other => panic!("nothing arrived: {other:?}"),
    }
    let _ = stop.send(true);
    let _ = worker.await;
}

/// Redis goes away mid-subscription and comes back: the periodic re-check
/// still delivers, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarts_mid_subscription() {
    let Some(mut redis) = crate::redis_server::RedisServer::start() else {
        eprintln!("no redis-server binary: Redis restart not tested");
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.redis_url = Some(redis.url());
        c.unread_recheck_secs = 1;
    })
    .await
    .unwrap();
    let room = app.create_room(1, "r", &["user_2"]).await;
    let mut socket = unread_socket(&app, 2).await;
    app.send_group(1, room, "before").await;
    assert_eq!(text_of(&socket.next().await), "before");

    redis.stop();
    app.send_group(1, room, "while down").await;
    match socket.next_within(Duration::from_secs(6)).await {
        Next::Message(message) => assert_eq!(text_of(&message), "while down"),
        other => panic!("the re-check did not deliver: {other:?}"),
    }
    redis.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.send_group(1, room, "after").await;
    match socket.next_within(Duration::from_secs(6)).await {
        Next::Message(message) => assert_eq!(text_of(&message), "after"),
        other => panic!("nothing after the restart: {other:?}"),
    }
    socket.quiet_for(Duration::from_millis(1500)).await;
    // Lists still answer, from the database.
    let response = app.client.get(app.url("/users/")).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}
