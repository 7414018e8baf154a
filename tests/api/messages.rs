//! Messages over GraphQL: history pages, senders, receipts, unread messages
//! and counts, markRoomSeen, and the fixed statement count of a room list.

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code};

const HISTORY: &str = "query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
    room(id: $id) { messages(first: $first, after: $after, last: $last, before: $before) {
        totalCount
        edges { cursor node { id text sender { username } room { name } } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }";

fn texts(messages: &Value) -> Vec<String> {
    messages["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn room_history_pages_both_ways(app: TestApp) {
    let room = app.create_room(1, "history", &["user_2"]).await;
    for n in 1..=7 {
        app.store_message(room, if n % 2 == 0 { 2 } else { 1 }, &format!("m{n}"))
            .await;
    }
    let data = app
        .ok_as(Some(2), HISTORY, json!({"id": room, "first": 3}))
        .await;
    let page = &data["room"]["messages"];
    assert_eq!(texts(page), ["m1", "m2", "m3"]);
    assert_eq!(page["totalCount"], 7);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["edges"][1]["node"]["sender"]["username"], "user_2");
    assert_eq!(page["edges"][0]["node"]["room"]["name"], "history");

    let after = page["pageInfo"]["endCursor"].clone();
    let data = app
        .ok_as(
            Some(2),
            HISTORY,
            json!({"id": room, "first": 10, "after": after}),
        )
        .await;
    assert_eq!(texts(&data["room"]["messages"]), ["m4", "m5", "m6", "m7"]);
    assert_eq!(data["room"]["messages"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(
        data["room"]["messages"]["pageInfo"]["hasPreviousPage"],
        true
    );

    let data = app
        .ok_as(Some(2), HISTORY, json!({"id": room, "last": 2}))
        .await;
    let page = &data["room"]["messages"];
    assert_eq!(texts(page), ["m6", "m7"]);
    assert_eq!(page["pageInfo"]["hasPreviousPage"], true);
    let before = page["pageInfo"]["startCursor"].clone();
    let data = app
        .ok_as(
            Some(2),
            HISTORY,
            json!({"id": room, "last": 10, "before": before}),
        )
        .await;
    assert_eq!(
        texts(&data["room"]["messages"]),
        ["m1", "m2", "m3", "m4", "m5"]
    );
    assert_eq!(
        data["room"]["messages"]["pageInfo"]["hasPreviousPage"],
        false
    );
}

async fn empty_rooms_and_foreign_cursors(app: TestApp) {
    let empty = app.create_room(1, "empty", &[]).await;
    let data = app.ok_as(Some(1), HISTORY, json!({"id": empty})).await;
    let page = &data["room"]["messages"];
    assert_eq!(page["edges"], json!([]));
    assert_eq!(page["totalCount"], 0);
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    assert_eq!(page["pageInfo"]["endCursor"], Value::Null);

    // A cursor taken from another room only positions the page; it never
    // brings that room's messages along.
    let other = app.create_room(1, "other", &[]).await;
    let first = app.store_message(other, 1, "elsewhere").await;
    app.store_message(empty, 1, "here").await;
    let data = app
        .ok_as(Some(1), HISTORY, json!({"id": other, "first": 1}))
        .await;
    let cursor = data["room"]["messages"]["pageInfo"]["endCursor"].clone();
    let data = app
        .ok_as(
            Some(1),
            HISTORY,
            json!({"id": empty, "first": 5, "after": cursor}),
        )
        .await;
    assert_eq!(texts(&data["room"]["messages"]), ["here"]);
    assert!(first > 0);
}

const UNREAD: &str = "{ viewer { rooms { name unreadCount } }
    unreadMessages { totalCount edges { node { text seenByViewer room { name } } } } }";

async fn unread_counts_follow_sends_and_marks(app: TestApp) {
    let family = app.create_room(1, "family", &["user_2", "user_3"]).await;
    let work = app.create_room(2, "work", &["user_1"]).await;
    app.store_message(family, 1, "hi fam").await;
    app.store_message(family, 1, "dinner?").await;
    app.store_message(family, 3, "yes").await;
    app.store_message(work, 1, "report").await;

    let data = app.ok_as(Some(2), UNREAD, json!({})).await;
    let rooms: Vec<(String, i64)> = data["viewer"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["unreadCount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rooms, [("family".to_owned(), 3), ("work".to_owned(), 1)]);
    assert_eq!(data["unreadMessages"]["totalCount"], 4);
    assert_eq!(
        texts(&data["unreadMessages"]),
        ["hi fam", "dinner?", "yes", "report"]
    );

    // The sender's own messages are never unread.
    let data = app.ok_as(Some(1), UNREAD, json!({})).await;
    assert_eq!(texts(&data["unreadMessages"]), ["yes"]);

    let mark =
        "mutation($id: ID!) { markRoomSeen(roomId: $id) { markedCount room { unreadCount } } }";
    let data = app.ok_as(Some(2), mark, json!({"id": family})).await;
    assert_eq!(data["markRoomSeen"]["markedCount"], 3);
    assert_eq!(data["markRoomSeen"]["room"]["unreadCount"], 0);
    let data = app.ok_as(Some(2), mark, json!({"id": family})).await;
    assert_eq!(data["markRoomSeen"]["markedCount"], 0, "seen at most once");

    let data = app.ok_as(Some(2), UNREAD, json!({})).await;
    assert_eq!(texts(&data["unreadMessages"]), ["report"]);
    // Another user's receipts are their own.
    let data = app.ok_as(Some(3), UNREAD, json!({})).await;
    assert_eq!(texts(&data["unreadMessages"]), ["hi fam", "dinner?"]);

    let body = app.graphql_as(Some(9), mark, json!({"id": family})).await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    let body = app.graphql(UNREAD, json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

async fn mark_seen_up_to_a_message(app: TestApp) {
    let room = app.create_room(1, "r", &["user_2"]).await;
    let a = app.store_message(room, 1, "a").await;
    app.store_message(room, 1, "b").await;
    let data = app
        .ok_as(
            Some(2),
            "mutation($id: ID!, $m: ID) { markRoomSeen(roomId: $id, upToMessageId: $m) { markedCount } }",
            json!({"id": room, "m": a}),
        )
        .await;
    assert_eq!(data["markRoomSeen"]["markedCount"], 1);
    let data = app.ok_as(Some(2), UNREAD, json!({})).await;
    assert_eq!(texts(&data["unreadMessages"]), ["b"]);
}

async fn receipts_show_who_saw_what(app: TestApp) {
    let room = app.create_room(1, "r", &["user_2", "user_3"]).await;
    app.store_message(room, 1, "hello").await;
    app.ok_as(
        Some(3),
        "mutation($id: ID!) { markRoomSeen(roomId: $id) { markedCount } }",
        json!({"id": room}),
    )
    .await;
    let query = "query($id: ID!) { room(id: $id) { messages { edges { node {
        seenByViewer seenBy { user { username } seenAt } } } } } }";
    let data = app.ok_as(Some(2), query, json!({"id": room})).await;
    let node = &data["room"]["messages"]["edges"][0]["node"];
    assert_eq!(node["seenByViewer"], false);
    assert_eq!(node["seenBy"].as_array().unwrap().len(), 1);
    assert_eq!(node["seenBy"][0]["user"]["username"], "user_3");
    assert!(node["seenBy"][0]["seenAt"].is_string());
    let data = app.ok_as(Some(3), query, json!({"id": room})).await;
    assert_eq!(
        data["room"]["messages"]["edges"][0]["node"]["seenByViewer"],
        true
    );
    let data = app.ok_as(Some(1), query, json!({"id": room})).await;
    assert_eq!(
        data["room"]["messages"]["edges"][0]["node"]["seenByViewer"], true,
        "a sender has seen their own message"
    );
}

async fn leaving_a_room_drops_its_unread(app: TestApp) {
    let room = app.create_room(1, "r", &["user_2"]).await;
    app.store_message(room, 1, "x").await;
    app.ok_as(
        Some(2),
        "mutation($id: ID!) { leaveRoom(roomId: $id) { roomDeleted } }",
        json!({"id": room}),
    )
    .await;
    let data = app.ok_as(Some(2), UNREAD, json!({})).await;
    assert_eq!(data["unreadMessages"]["totalCount"], 0);
}

/// The statement count of the room list must not depend on how many rooms,
/// members or messages it returns.
async fn room_list_costs_a_fixed_number_of_statements(app: TestApp) {
    let query = "{ rooms(first: 100) { edges { node {
        name unreadCount members { username profile { status } }
        messages(first: 50) { edges { node { text sender { username } seenByViewer } } } } } } }";
    let run = |viewer: i64| {
        let app = &app;
        async move {
            let before = app.statements.get();
            let data = app.ok_as(Some(viewer), query, json!({})).await;
            (app.statements.get() - before, data)
        }
    };
    // user_1: one room with two members and three messages.
    let room = app.create_room(1, "one", &["user_2"]).await;
    for n in 0..3 {
        app.store_message(room, 2, &format!("m{n}")).await;
    }
    let (one_room, data) = run(1).await;
    assert_eq!(data["rooms"]["edges"].as_array().unwrap().len(), 1);

    // user_3: thirty rooms, each with several members and messages from
    // different senders.
    for r in 0..30 {
        let id = app
            .create_room(3, &format!("room-{r}"), &["user_4", "user_5", "user_6"])
            .await;
        for n in 0..4 {
            app.store_message(id, 3 + (n % 4), &format!("r{r} m{n}"))
                .await;
        }
    }
    let (thirty_rooms, data) = run(3).await;
    let edges = data["rooms"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 30);
    assert_eq!(
        edges[29]["node"]["messages"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(edges[29]["node"]["members"].as_array().unwrap().len(), 4);
    assert_eq!(
        one_room, thirty_rooms,
        "statements for 1 room vs 30 rooms: {one_room} vs {thirty_rooms}"
    );
}

async fn internal_errors_show_no_detail(app: TestApp) {
    use sea_orm::ConnectionTrait;
    let room = app.create_room(1, "r", &[]).await;
    app.db
        .execute_unprepared("DROP TABLE message_seen")
        .await
        .unwrap();
    let body = app
        .graphql_as(
            Some(1),
            "query($id: ID!) { room(id: $id) { unreadCount } }",
            json!({"id": room}),
        )
        .await;
    assert_eq!(error_code(&body), "INTERNAL");
    let text = body.to_string().to_lowercase();
    for leak in ["message_seen", "select", "sqlx", "table", ".rs"] {
        assert!(!text.contains(leak), "leaks {leak}: {body}");
    }
}

crate::scenarios!(
    room_history_pages_both_ways,
    empty_rooms_and_foreign_cursors,
    unread_counts_follow_sends_and_marks,
    mark_seen_up_to_a_message,
    receipts_show_who_saw_what,
    leaving_a_room_drops_its_unread,
    internal_errors_show_no_detail,
);

mod quiet {
    use super::*;

    crate::scenarios!(config = crate::helpers::quiet; room_list_costs_a_fixed_number_of_statements);
}
