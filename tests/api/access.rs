//! Who gets what after membership or a session ends: a stream that lagged
//! past the viewer's leave, one's own task after leaving, presence through
//! rooms someone else made, a replay past an old leave, and websockets
//! after logout, account deletion, token expiry, across two gateways.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, spawn_app_with, start},
    ws::{Next, Socket},
};

const TRANSPORT: &str = "graphql-transport-ws";
const JOIN: &str = "mutation($r: ID!) { joinRoom(roomId: $r) { id } }";
const LEAVE: &str = "mutation($r: ID!) { leaveRoom(roomId: $r) { roomDeleted } }";
const ROOM_MESSAGES: &str = "subscription($r: ID!) { roomMessages(roomId: $r) { text } }";
const UNREAD: &str = "subscription { unreadMessages { text } }";
const EVENTS: &str = "subscription($r: ID!, $after: String) {
    roomEvents(roomId: $r, after: $after) {
        __typename
        ... on MessageStoredEvent { cursor message { text } }
        ... on MemberJoinedEvent { cursor user { username } }
        ... on MemberLeftEvent { cursor user { username } }
        ... on PresenceChangedEvent { user { username } presence { online } }
    } }";

fn live(config: &mut chat_gateway::config::Config) {
    config.unread_recheck_secs = 1;
    config.rate_limit_sends = "off".parse().unwrap();
    config.graphql_timeout_ms = 120_000;
    // A stalled reader stays connected for as long as the test needs.
    config.ws_send_timeout_secs = 300;
    config.ws_keepalive_secs = 300;
}

/// Wait for a task to succeed; the message's id.
async fn sent(app: &TestApp, task: &str) -> String {
    let done = app.finished_task(task).await;
    assert_eq!(done["state"], "SUCCESS", "{done}");
    done["result"]["id"].as_str().unwrap().to_owned()
}

/// Every frame until the socket is quiet for `quiet`: the texts of every
/// `next` payload (as JSON text) and the ids that completed.
async fn drain(socket: &mut Socket, quiet: Duration) -> (String, Vec<String>) {
    let mut seen = String::new();
    let mut completed = Vec::new();
    loop {
        match socket.next_within(quiet).await {
            Next::Message(message) => {
                if message["type"] == "complete" {
                    completed.push(message["id"].as_str().unwrap_or_default().to_owned());
                }
                seen.push_str(&message.to_string());
            }
            Next::Closed(_) | Next::Nothing => return (seen, completed),
        }
    }
}

/// A viewer whose socket stalled (so their streams lag behind the bus, and
/// their own leave event is among what they missed) gets nothing of the
/// room after they left: not from `roomMessages` (which ends), not from
/// `unreadMessages`, not from `roomEvents` (which ends at the leave).
async fn a_lagged_stream_delivers_nothing_after_a_leave(app: TestApp) {
    let room = app.create_room(1, "lag", &["user_2", "user_3"]).await;
    let mut stalled = Socket::connect_with_receive_buffer(&app, TRANSPORT, 4096).await;
    stalled.init(json!({"userId": 2})).await;
    stalled
        .subscribe("room", ROOM_MESSAGES, json!({"r": room}))
        .await;
    stalled.subscribe("unread", UNREAD, json!({})).await;
    stalled
        .subscribe("events", EVENTS, json!({"r": room}))
        .await;
    stalled.send(json!({"type": "ping"})).await;
    assert_eq!(stalled.next().await["type"], "pong");
    let mut witness = Socket::connect(&app, TRANSPORT).await;
    witness.init(json!({"userId": 3})).await;
    witness
        .subscribe("room", ROOM_MESSAGES, json!({"r": room}))
        .await;
    witness.send(json!({"type": "ping"})).await;
    assert_eq!(witness.next().await["type"], "pong");

    // Fill the stalled socket (its buffers hold a few MB), then leave.
    let filler = "\u{20ac}".repeat(1000);
    let app = &app;
    futures::stream::iter(0..1500)
        .map(|i| {
            let text = format!("{i:04} {filler}");
            async move { app.store_message(room, 1, &text).await }
        })
        .buffer_unordered(8)
        .count()
        .await;
    app.ok_as(Some(2), LEAVE, json!({"r": room})).await;
    // More than the bus holds, of events that are none of the viewer's
    // business: the stalled streams lag past the leave.
    let until = chrono::Utc::now() + chrono::Duration::seconds(5);
    for n in 0..(chat_gateway::events::CHANNEL_CAPACITY as i64 + 500) {
        app.events.publish(chat_gateway::events::Event::Typing {
            room_id: room + 1_000_000,
            user_id: 1_000_000 + n,
            typing: true,
            expires_at: until,
        });
    }
    let secret = "POST-LEAVE-SECRET from user_1";
    sent(app, &app.send_group(1, room, secret).await).await;
    // The witness, still a member, gets it: it was sent and delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let message = witness.next().await;
        if message.to_string().contains(secret) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
    }

    // The stalled viewer reads again, through a couple of re-checks.
    let (seen, completed) = drain(&mut stalled, Duration::from_secs(3)).await;
    assert!(
        !seen.contains("POST-LEAVE-SECRET"),
        "a left viewer got the room's later message"
    );
    assert!(completed.contains(&"room".to_owned()), "{completed:?}");
    assert!(completed.contains(&"events".to_owned()), "{completed:?}");
}

/// One's own task outlives a leave: the message is theirs, but what hangs
/// off the room (the message it replied to, reactions, receipts, mentions)
/// is not theirs to read any more, through `task` or `taskUpdated`.
async fn a_task_result_shows_no_room_data_after_leaving(app: TestApp) {
    let room = app.create_room(1, "after", &["user_2", "user_3"]).await;
    let parent = sent(&app, &app.send_group(1, room, "parent").await).await;
    let task = app
        .ok_as(
            Some(2),
            "mutation($r: ID!, $p: ID!) {
                sendGroupMessage(roomId: $r, text: \"my reply @user_3\", replyToId: $p) { id } }",
            json!({"r": room, "p": parent}),
        )
        .await["sendGroupMessage"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = sent(&app, &task).await;
    const RESULT: &str = "query($id: ID!) { task(id: $id) { result {
        text replyTo { text } replyCount reactions { emoji } seenBy { user { username } }
        mentions { username } mentioned } } }";
    // While a member, all of it shows.
    let data = app.ok_as(Some(2), RESULT, json!({"id": task})).await;
    assert_eq!(data["task"]["result"]["replyTo"]["text"], "parent");
    assert_eq!(data["task"]["result"]["mentions"][0]["username"], "user_3");

    app.ok_as(Some(2), LEAVE, json!({"r": room})).await;
    app.ok_as(
        Some(1),
        "mutation($id: ID!) { editMessage(messageId: $id, text: \"EDITED-AFTER-LEAVE\") { id } }",
        json!({"id": parent}),
    )
    .await;
    app.ok_as(
        Some(3),
        "mutation($id: ID!) { addReaction(messageId: $id, emoji: \"🎉\") { id } }",
        json!({"id": mine}),
    )
    .await;
    app.ok_as(
        Some(3),
        "mutation($r: ID!) { markRoomSeen(roomId: $r) { markedCount } }",
        json!({"r": room}),
    )
    .await;

    let data = app.ok_as(Some(2), RESULT, json!({"id": task})).await;
    let result = &data["task"]["result"];
    // Their own message still shows...
    assert_eq!(result["text"], "my reply @user_3", "{data}");
    // ...and nothing of the room that goes on without them.
    assert_eq!(result["replyTo"], Value::Null, "{data}");
    assert_eq!(result["replyCount"], 0, "{data}");
    assert_eq!(result["reactions"], json!([]), "{data}");
    assert_eq!(result["seenBy"], json!([]), "{data}");
    assert_eq!(result["mentions"], json!([]), "{data}");
    assert!(!data.to_string().contains("EDITED-AFTER-LEAVE"));

    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.init(json!({"userId": 2})).await;
    socket
        .subscribe(
            "task",
            "subscription($id: ID!) { taskUpdated(id: $id) { state result {
                replyTo { text } reactions { emoji } seenBy { seenAt } } } }",
            json!({"id": task}),
        )
        .await;
    let update = socket.next().await;
    let result = &update["payload"]["data"]["taskUpdated"]["result"];
    assert_eq!(result["replyTo"], Value::Null, "{update}");
    assert_eq!(result["reactions"], json!([]), "{update}");
    assert_eq!(result["seenBy"], json!([]), "{update}");
}

/// Presence follows consent: a direct message or a room someone else made
/// shows nobody's presence; joining a room or writing in it does.
async fn presence_shows_only_through_rooms_chosen(app: TestApp) {
    let presence = "query($u: ID!) { user(id: $u) { presence { online } } }";
    let mut victim = Socket::connect(&app, TRANSPORT).await;
    victim.init(json!({"userId": 5})).await;
    // The attacker writes to the victim, and puts them in a room of theirs.
    sent(&app, &app.send_direct(1, 5, "hi stranger").await).await;
    let room = app.create_room(1, "trap", &["user_5", "user_6"]).await;
    let data = app.ok_as(Some(1), presence, json!({"u": 5})).await;
    assert_eq!(data["user"]["presence"], Value::Null, "{data}");

    // Nor does the room's event stream tell when the victim comes and goes.
    let mut events = Socket::connect(&app, TRANSPORT).await;
    events.init(json!({"userId": 1})).await;
    events.subscribe("events", EVENTS, json!({"r": room})).await;
    events.send(json!({"type": "ping"})).await;
    assert_eq!(events.next().await["type"], "pong");
    drop(victim);
    let mut victim = Socket::connect(&app, TRANSPORT).await;
    victim.init(json!({"userId": 5})).await;
    // user_7 joins by choice and comes online: that one shows.
    app.ok_as(Some(7), JOIN, json!({"r": room})).await;
    let mut joiner = Socket::connect(&app, TRANSPORT).await;
    joiner.init(json!({"userId": 7})).await;
    let mut users = Vec::new();
    while let Next::Message(message) = events.next_within(Duration::from_secs(3)).await {
        let event = &message["payload"]["data"]["roomEvents"];
        if event["__typename"] == "PresenceChangedEvent" {
            users.push(event["user"]["username"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(users, ["user_7"]);
    let data = app.ok_as(Some(1), presence, json!({"u": 7})).await;
    assert_eq!(data["user"]["presence"]["online"], true, "{data}");

    // The victim answers the direct message: now they chose that room.
    sent(&app, &app.send_direct(5, 1, "hello back").await).await;
    let data = app.ok_as(Some(1), presence, json!({"u": 5})).await;
    assert_eq!(data["user"]["presence"]["online"], true, "{data}");
    drop((victim, joiner));
}

/// A replay from the start goes past a leave the viewer re-joined after:
/// every event once, in order, and then the live ones.
async fn a_replay_goes_on_past_an_old_leave(app: TestApp) {
    let room = app.create_room(1, "again", &["user_2"]).await;
    sent(&app, &app.send_group(1, room, "one").await).await;
    app.ok_as(Some(2), LEAVE, json!({"r": room})).await;
    sent(&app, &app.send_group(1, room, "two").await).await;
    app.ok_as(Some(2), JOIN, json!({"r": room})).await;
    sent(&app, &app.send_group(1, room, "three").await).await;

    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket.init(json!({"userId": 2})).await;
    let start = chat_gateway::domain::pagination::encode_cursor(0);
    socket
        .subscribe("events", EVENTS, json!({"r": room, "after": start}))
        .await;
    let mut kinds = Vec::new();
    for _ in 0..7 {
        let message = socket.next().await;
        assert_eq!(message["type"], "next", "{message}");
        let event = &message["payload"]["data"]["roomEvents"];
        kinds.push(match event["__typename"].as_str().unwrap() {
            "MessageStoredEvent" => event["message"]["text"].as_str().unwrap().to_owned(),
            other => format!("{other}:{}", event["user"]["username"].as_str().unwrap()),
        });
    }
    assert_eq!(
        kinds,
        [
            "MemberJoinedEvent:user_1",
            "MemberJoinedEvent:user_2",
            "one",
            "MemberLeftEvent:user_2",
            "two",
            "MemberJoinedEvent:user_2",
            "three"
        ]
    );
    // Still live.
    sent(&app, &app.send_group(1, room, "four").await).await;
    let message = socket.next().await;
    assert_eq!(
        message["payload"]["data"]["roomEvents"]["message"]["text"], "four",
        "{message}"
    );
}

/// A websocket opened with a token ends (4401) when the token is revoked,
/// and one of a deleted account ends too; nothing is delivered after.
async fn sessions_end_with_their_token_or_account(app: TestApp) {
    let room = app.create_room(1, "sessions", &["user_3", "user_4"]).await;
    let token = app
        .login("user_3", chat_gateway::domain::users::SEED_PASSWORD)
        .await;
    let mut by_token = Socket::connect(&app, TRANSPORT).await;
    by_token
        .init(json!({"authorization": format!("Bearer {token}")}))
        .await;
    by_token.subscribe("unread", UNREAD, json!({})).await;
    let mut by_id = Socket::connect(&app, TRANSPORT).await;
    by_id.init(json!({"userId": 4})).await;
    by_id.subscribe("unread", UNREAD, json!({})).await;
    for socket in [&mut by_token, &mut by_id] {
        socket.send(json!({"type": "ping"})).await;
        assert_eq!(socket.next().await["type"], "pong");
    }
    sent(&app, &app.send_group(1, room, "before").await).await;
    for socket in [&mut by_token, &mut by_id] {
        assert!(socket.next().await.to_string().contains("before"));
    }

    let body = app
        .graphql_bearer(&token, "mutation { logout }", json!({}))
        .await;
    assert_eq!(body["data"]["logout"], true, "{body}");
    assert_eq!(by_token.closed_with().await, Some(4401));
    app.ok_as(Some(4), "mutation { deleteUser(id: 4) }", json!({}))
        .await;
    assert_eq!(by_id.closed_with().await, Some(4401));
    // A revoked token cannot open another.
    let mut again = Socket::connect(&app, TRANSPORT).await;
    again
        .send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}))
        .await;
    assert_eq!(again.closed_with().await, Some(4403));
}

/// A token's websocket ends when the token expires.
async fn a_session_ends_when_its_token_expires(app: TestApp) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let token = app
        .login("user_3", chat_gateway::domain::users::SEED_PASSWORD)
        .await;
    entity::auth_token::Entity::update_many()
        .col_expr(
            entity::auth_token::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() + chrono::Duration::seconds(2)),
        )
        .filter(entity::auth_token::Column::UserId.eq(3))
        .exec(&app.db)
        .await
        .unwrap();
    let mut socket = Socket::connect(&app, TRANSPORT).await;
    socket
        .init(json!({"authorization": format!("Bearer {token}")}))
        .await;
    socket.subscribe("unread", UNREAD, json!({})).await;
    assert_eq!(socket.closed_with().await, Some(4401));
}

crate::scenarios!(
    config = super::live;
    a_lagged_stream_delivers_nothing_after_a_leave,
    a_task_result_shows_no_room_data_after_leaving,
    presence_shows_only_through_rooms_chosen,
    a_replay_goes_on_past_an_old_leave,
    sessions_end_with_their_token_or_account,
    a_session_ends_when_its_token_expires,
);

/// Two gateways on one database and Redis: a logout on A ends the
/// websocket on B, and a leave on A ends B's room stream.
async fn across_gateways(backend: Backend) {
    let Some(a) = spawn_app_with(backend, live).await else {
        return;
    };
    if a.config.redis_url.is_none() {
        eprintln!("TEST_REDIS_URL is not set: the two-gateway run is skipped");
        return;
    }
    let b = start(a.config.clone(), a.backend, None).await;
    let room = a.create_room(1, "both", &["user_2", "user_3"]).await;
    let token = a
        .login("user_3", chat_gateway::domain::users::SEED_PASSWORD)
        .await;
    let mut on_b = Socket::connect(&b, TRANSPORT).await;
    on_b.init(json!({"authorization": format!("Bearer {token}")}))
        .await;
    let mut member_on_b = Socket::connect(&b, TRANSPORT).await;
    member_on_b.init(json!({"userId": 2})).await;
    member_on_b
        .subscribe("room", ROOM_MESSAGES, json!({"r": room}))
        .await;
    member_on_b.send(json!({"type": "ping"})).await;
    assert_eq!(member_on_b.next().await["type"], "pong");

    let body = a
        .graphql_bearer(&token, "mutation { logout }", json!({}))
        .await;
    assert_eq!(body["data"]["logout"], true, "{body}");
    assert_eq!(on_b.closed_with().await, Some(4401));

    a.ok_as(Some(2), LEAVE, json!({"r": room})).await;
    sent(&a, &a.send_group(1, room, "after the leave").await).await;
    let (seen, completed) = drain(&mut member_on_b, Duration::from_secs(3)).await;
    assert!(!seen.contains("after the leave"), "{seen}");
    assert_eq!(completed, ["room"]);
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
