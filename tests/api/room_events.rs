//! The live chat: `roomEvents` (every kind of room event, in order, each
//! stored one exactly once, resumable), typing indicators, presence, and
//! all of it across two gateways.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, error_code, spawn_app_with, start},
    ws::{Next, Socket},
};

const EVENTS: &str = "subscription($room: ID!, $after: String) {
    roomEvents(roomId: $room, after: $after) {
        __typename
        ... on MessageStoredEvent { cursor message { id text } }
        ... on MessageEditedEvent { cursor message { id text editedAt } }
        ... on MessageDeletedEvent { cursor message { id text deletedAt } }
        ... on ReactionChangedEvent { cursor emoji added user { username }
                                      message { reactions { emoji count } } }
        ... on MemberJoinedEvent { cursor user { username } }
        ... on MemberLeftEvent { cursor user { username } }
        ... on TypingEvent { typing expiresAt user { username } }
        ... on PresenceChangedEvent { presence { online lastSeenAt } user { username } }
    } }";

fn live(config: &mut chat_gateway::config::Config) {
    config.typing_ttl_secs = 1;
    config.unread_recheck_secs = 30;
    // Long windows: a burst cannot fall on both sides of a boundary.
    config.rate_limit_typing = "20/1h".parse().unwrap();
}

/// A `roomEvents` subscription of `user`, live once it answers a ping
/// (unless it resumes).
async fn subscribe(app: &TestApp, user: i64, room: i64, after: Option<&str>) -> Socket {
    let mut socket = Socket::connect(app, "graphql-transport-ws").await;
    socket.init(json!({"userId": user})).await;
    socket
        .subscribe("events", EVENTS, json!({"room": room, "after": after}))
        .await;
    if after.is_some() {
        // What it resumes comes at once, before any pong.
        return socket;
    }
    socket.send(json!({"type": "ping"})).await;
    let pong = socket.next().await;
    assert_eq!(pong["type"], "pong", "{pong}");
    socket
}

/// The next room event (the `roomEvents` object), within 5 s.
async fn next_event(socket: &mut Socket) -> Value {
    match socket.next_within(Duration::from_secs(5)).await {
        Next::Message(message) => {
            assert_eq!(message["type"], "next", "{message}");
            message["payload"]["data"]["roomEvents"].clone()
        }
        other => panic!("expected a room event, got {other:?}"),
    }
}

async fn mutate(app: &TestApp, user: i64, query: &str, vars: Value) -> Value {
    app.ok_as(Some(user), query, vars).await
}

const EDIT: &str =
    "mutation($id: ID!, $t: String!) { editMessage(messageId: $id, text: $t) { id } }";
const DELETE: &str = "mutation($id: ID!) { deleteMessage(messageId: $id) { id } }";
const REACT: &str = "mutation($id: ID!) { addReaction(messageId: $id, emoji: \"👍\") { id } }";
const JOIN: &str = "mutation($r: ID!) { joinRoom(roomId: $r) { id } }";
const LEAVE: &str = "mutation($r: ID!) { leaveRoom(roomId: $r) { roomDeleted } }";
const TYPING: &str = "mutation($r: ID!, $on: Boolean!) {
    setTyping(roomId: $r, typing: $on) { typing expiresAt } }";

/// Send as `user` and wait until the message is stored; its id.
async fn send(app: &TestApp, user: i64, room: i64, text: &str) -> String {
    let task = app.send_group(user, room, text).await;
    let done = app.finished_task(&task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    done["result"]["id"].as_str().unwrap().to_owned()
}

async fn every_kind_in_order_and_resumable(app: TestApp) {
    let room = app.create_room(1, "live", &["user_2", "user_3"]).await;
    let mut socket = subscribe(&app, 2, room, None).await;

    let id = send(&app, 1, room, "hello").await;
    mutate(&app, 1, EDIT, json!({"id": id, "t": "hello all"})).await;
    mutate(&app, 3, REACT, json!({"id": id})).await;
    mutate(&app, 1, DELETE, json!({"id": id})).await;
    mutate(&app, 4, JOIN, json!({"r": room})).await;
    mutate(&app, 4, LEAVE, json!({"r": room})).await;

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(next_event(&mut socket).await);
    }
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| e["__typename"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "MessageStoredEvent",
            "MessageEditedEvent",
            "ReactionChangedEvent",
            "MessageDeletedEvent",
            "MemberJoinedEvent",
            "MemberLeftEvent"
        ],
        "{seen:?}"
    );
    assert_eq!(seen[0]["message"]["text"], "hello");
    assert!(seen[1]["message"]["editedAt"].is_string());
    assert_eq!(seen[2]["user"]["username"], "user_3");
    assert_eq!(seen[2]["added"], true);
    assert_eq!(seen[3]["message"]["text"], "");
    assert_eq!(seen[4]["user"]["username"], "user_4");
    assert_eq!(seen[5]["user"]["username"], "user_4");
    socket.quiet_for(Duration::from_millis(300)).await;

    // Resume after the second event: the other four, once, in order. The
    // stored state is today's: the message was deleted since.
    let after = seen[1]["cursor"].as_str().unwrap();
    let mut resumed = subscribe(&app, 2, room, Some(after)).await;
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(next_event(&mut resumed).await);
    }
    let cursors = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["cursor"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(cursors(&again), cursors(&seen[2..]));
    assert_eq!(again[0]["__typename"], "ReactionChangedEvent");
    resumed.quiet_for(Duration::from_millis(300)).await;

    // Typing: others see it, it lapses by itself; the typist's own stream
    // does not echo it.
    mutate(&app, 3, TYPING, json!({"r": room, "on": true})).await;
    let typing = next_event(&mut socket).await;
    assert_eq!(typing["__typename"], "TypingEvent", "{typing}");
    assert_eq!(typing["typing"], true);
    assert_eq!(typing["user"]["username"], "user_3");
    let lapsed = next_event(&mut socket).await;
    assert_eq!(lapsed["__typename"], "TypingEvent", "{lapsed}");
    assert_eq!(lapsed["typing"], false);
    // Sending ends it at once.
    mutate(&app, 3, TYPING, json!({"r": room, "on": true})).await;
    assert_eq!(next_event(&mut socket).await["typing"], true);
    send(&app, 3, room, "done typing").await;
    let stop = next_event(&mut socket).await;
    assert_eq!(stop["__typename"], "TypingEvent", "{stop}");
    assert_eq!(stop["typing"], false);
    assert_eq!(
        next_event(&mut socket).await["message"]["text"],
        "done typing"
    );

    // Presence: a member connecting and going away.
    let mut member = Socket::connect(&app, "graphql-transport-ws").await;
    member.init(json!({"userId": 3})).await;
    let online = next_event(&mut socket).await;
    assert_eq!(online["__typename"], "PresenceChangedEvent", "{online}");
    assert_eq!(online["presence"]["online"], true);
    assert_eq!(online["user"]["username"], "user_3");
    drop(member);
    let offline = next_event(&mut socket).await;
    assert_eq!(offline["presence"]["online"], false, "{offline}");
    assert!(offline["presence"]["lastSeenAt"].is_string(), "{offline}");

    // The viewer leaving ends the stream, after its own leave event.
    mutate(&app, 2, LEAVE, json!({"r": room})).await;
    let left = next_event(&mut socket).await;
    assert_eq!(left["__typename"], "MemberLeftEvent", "{left}");
    assert_eq!(left["user"]["username"], "user_2");
    match socket.next_within(Duration::from_secs(5)).await {
        Next::Message(message) => assert_eq!(message["type"], "complete", "{message}"),
        other => panic!("expected complete, got {other:?}"),
    }
}

async fn room_events_are_for_members(app: TestApp) {
    let room = app.create_room(1, "private", &[]).await;
    let mut socket = Socket::connect(&app, "graphql-transport-ws").await;
    socket.init(json!({"userId": 2})).await;
    socket
        .subscribe("events", EVENTS, json!({"room": room}))
        .await;
    let answer = socket.next().await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["payload"][0]["extensions"]["code"], "FORBIDDEN");
    for (vars, code) in [
        (json!({"room": 999_999}), "NOT_FOUND"),
        (json!({"room": "x"}), "BAD_USER_INPUT"),
        (json!({"room": room, "after": "bogus"}), "BAD_USER_INPUT"),
    ] {
        let mut socket = Socket::connect(&app, "graphql-transport-ws").await;
        socket.init(json!({"userId": 1})).await;
        socket.subscribe("events", EVENTS, vars.clone()).await;
        let answer = socket.next().await;
        assert_eq!(answer["type"], "error", "{vars}: {answer}");
        assert_eq!(answer["payload"][0]["extensions"]["code"], code, "{answer}");
    }
    // A cursor of the future is no position in the room.
    let future = chat_gateway::domain::pagination::encode_cursor(1_000);
    let mut socket = Socket::connect(&app, "graphql-transport-ws").await;
    socket.init(json!({"userId": 1})).await;
    socket
        .subscribe("events", EVENTS, json!({"room": room, "after": future}))
        .await;
    let answer = socket.next().await;
    assert_eq!(answer["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");

    // Typing needs membership and identity, and is rate-limited.
    let body = app
        .graphql_as(Some(2), TYPING, json!({"r": room, "on": true}))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
    let body = app
        .graphql_as(None, TYPING, json!({"r": room, "on": true}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    let mut limited = false;
    for _ in 0..40 {
        let body = app
            .graphql_as(Some(1), TYPING, json!({"r": room, "on": true}))
            .await;
        if body.get("errors").is_some() {
            assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
            limited = true;
            break;
        }
    }
    assert!(limited, "40 typing indicators in an hour were all accepted");
}

/// A resume far behind gets every stored event, in order, each once
/// (the stream reads its backlog a batch at a time).
async fn a_far_resume_gets_the_whole_backlog(app: TestApp) {
    let room = app.create_room(1, "long", &["user_2"]).await;
    // Two joins came first (user_1, user_2); then 1,200 messages.
    for n in 0..1200 {
        app.store_message(room, 1, &format!("m{n}")).await;
    }
    let start = chat_gateway::domain::pagination::encode_cursor(0);
    let mut socket = subscribe(&app, 2, room, Some(&start)).await;
    let mut cursors = Vec::new();
    let mut texts = Vec::new();
    while texts.len() < 1200 {
        let event = next_event(&mut socket).await;
        cursors.push(event["cursor"].as_str().unwrap().to_owned());
        if event["__typename"] == "MessageStoredEvent" {
            texts.push(event["message"]["text"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(cursors.len(), 1202);
    let expected: Vec<String> = (0..1200).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected);
    let mut unique = cursors.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), cursors.len(), "an event came twice");
    socket.quiet_for(Duration::from_millis(300)).await;
}

/// `Room.typing` and `User.presence`, read with queries.
async fn typing_and_presence_in_queries(app: TestApp) {
    // user_2 joins by choice: their presence shows through this room.
    let room = app.create_room(1, "q", &[]).await;
    mutate(&app, 2, JOIN, json!({"r": room})).await;
    let read = "query($r: ID!) { room(id: $r) { typing { username } }
        user(id: 2) { presence { online lastSeenAt } } }";
    let data = mutate(&app, 1, read, json!({"r": room})).await;
    assert_eq!(data["room"]["typing"], json!([]));
    assert_eq!(
        data["user"]["presence"],
        json!({"online": false, "lastSeenAt": null})
    );

    let mut socket = Socket::connect(&app, "graphql-transport-ws").await;
    socket.init(json!({"userId": 2})).await;
    wait_for(&app, read, json!({"r": room}), |d| {
        d["user"]["presence"]["online"] == true
    })
    .await;
    // The indicator lives one second here; a loaded machine may take
    // longer than that between the mutation and the read, so each read
    // follows a fresh `setTyping`.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        mutate(&app, 2, TYPING, json!({"r": room, "on": true})).await;
        let data = mutate(&app, 1, read, json!({"r": room})).await;
        if data["room"]["typing"] != json!([]) {
            assert_eq!(data["room"]["typing"], json!([{"username": "user_2"}]));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never typing: {data}"
        );
    }
    mutate(&app, 2, TYPING, json!({"r": room, "on": false})).await;
    drop(socket);
    let data = wait_for(&app, read, json!({"r": room}), |d| {
        d["user"]["presence"]["online"] == false
    })
    .await;
    assert_eq!(data["room"]["typing"], json!([]));
    assert!(data["user"]["presence"]["lastSeenAt"].is_string(), "{data}");
    // The status the user chose is not touched.
    let data = mutate(&app, 1, "{ user(id: 2) { profile { status } } }", json!({})).await;
    assert_eq!(data["user"]["profile"]["status"], "OFFLINE");
    // Presence is for the user and those who share a room with them.
    let presence = "{ user(id: 2) { presence { online } } }";
    assert!(mutate(&app, 2, presence, json!({})).await["user"]["presence"].is_object());
    let data = mutate(&app, 7, presence, json!({})).await;
    assert_eq!(data["user"]["presence"], Value::Null, "{data}");
    let body = app.graphql(presence, json!({})).await;
    assert_eq!(body["data"]["user"]["presence"], Value::Null, "{body}");
}

/// Read until `done` holds (up to 5 s); the last answer.
async fn wait_for(app: &TestApp, query: &str, vars: Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let data = app.ok_as(Some(1), query, vars.clone()).await;
        if done(&data) {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {data}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

crate::scenarios!(
    config = super::live;
    every_kind_in_order_and_resumable,
    room_events_are_for_members,
    typing_and_presence_in_queries,
    a_far_resume_gets_the_whole_backlog,
);

/// Two gateways sharing the database and Redis: what is done through A
/// reaches a `roomEvents` subscriber on B, and B's queries see A's typists
/// and A's connected users; when A dies, its users go offline.
async fn across_gateways(backend: Backend) {
    let Some(a) = spawn_app_with(backend, |c| {
        live(c);
        c.presence_ttl_secs = 1;
    })
    .await
    else {
        return;
    };
    if a.config.redis_url.is_none() {
        eprintln!("TEST_REDIS_URL is not set: the two-gateway run is skipped");
        return;
    }
    let b = start(a.config.clone(), a.backend, None).await;
    let room = a.create_room(1, "both", &["user_2"]).await;
    // user_3 joins by choice: their presence shows through this room.
    mutate(&a, 3, JOIN, json!({"r": room})).await;
    let mut on_b = subscribe(&b, 2, room, None).await;

    let id = send(&a, 1, room, "from A").await;
    mutate(&a, 1, EDIT, json!({"id": id, "t": "edited on A"})).await;
    mutate(&a, 3, REACT, json!({"id": id})).await;
    mutate(&a, 3, TYPING, json!({"r": room, "on": true})).await;
    mutate(&a, 1, DELETE, json!({"id": id})).await;
    let mut kinds = Vec::new();
    while kinds.len() < 6 {
        let event = next_event(&mut on_b).await;
        kinds.push(format!(
            "{}{}",
            event["__typename"].as_str().unwrap(),
            if event["typing"] == false {
                "(stop)"
            } else {
                ""
            }
        ));
    }
    // The typing stop comes when it lapses, after the delete.
    assert_eq!(
        kinds,
        [
            "MessageStoredEvent",
            "MessageEditedEvent",
            "ReactionChangedEvent",
            "TypingEvent",
            "MessageDeletedEvent",
            "TypingEvent(stop)"
        ]
    );

    // A user connected to A is online for B; A dies without a word (no
    // graceful close): after the presence TTL, B reports them offline.
    let read = "{ user(id: 3) { presence { online lastSeenAt } } }";
    let mut member = Socket::connect(&a, "graphql-transport-ws").await;
    member.init(json!({"userId": 3})).await;
    let online = next_event(&mut on_b).await;
    assert_eq!(online["presence"]["online"], true, "{online}");
    wait_for(&b, read, json!({}), |d| {
        d["user"]["presence"]["online"] == true
    })
    .await;
    let _database = a.kill();
    let offline = next_event(&mut on_b).await;
    assert_eq!(offline["__typename"], "PresenceChangedEvent", "{offline}");
    assert_eq!(offline["presence"]["online"], false);
    let data = wait_for(&b, read, json!({}), |d| {
        d["user"]["presence"]["online"] == false
    })
    .await;
    assert!(data["user"]["presence"]["lastSeenAt"].is_string(), "{data}");
    drop(member);
}

mod across {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::across_gateways(crate::helpers::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::across_gateways(crate::helpers::Backend::Postgres).await;
    }
}
