//! Edits, deletes, reactions, replies and mentions: what they show on every
//! API (GraphQL, the legacy history and unseen paths), who may make them,
//! and what their bad inputs get.

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code};

const EDIT: &str = "mutation($id: ID!, $text: String!) {
    editMessage(messageId: $id, text: $text) { id text editedAt deletedAt } }";
const DELETE: &str = "mutation($id: ID!) {
    deleteMessage(messageId: $id) { id text editedAt deletedAt reactions { emoji } } }";
const REACT: &str = "mutation($id: ID!, $emoji: String!) {
    addReaction(messageId: $id, emoji: $emoji) { reactions { emoji count viewerReacted } } }";
const UNREACT: &str = "mutation($id: ID!, $emoji: String!) {
    removeReaction(messageId: $id, emoji: $emoji) { reactions { emoji count viewerReacted } } }";
const HISTORY: &str = "query($id: ID!) { room(id: $id) { messages { edges { node {
    id text editedAt deletedAt replyTo { id text deletedAt } replyCount
    mentioned mentions { username } reactions { emoji count viewerReacted } } } } } }";

fn nodes(data: &Value) -> Vec<Value> {
    data["room"]["messages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn legacy(app: &TestApp, path: &str) -> Value {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

fn legacy_texts(room: &Value) -> Vec<String> {
    room["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn senders_edit_and_delete_their_messages(app: TestApp) {
    let room = app.create_room(1, "family", &["user_2"]).await;
    let first = app.store_message(room, 1, "helo").await;
    let second = app.store_message(room, 1, "oops").await;
    let kept = app.store_message(room, 2, "hi").await;

    let data = app
        .ok_as(Some(1), EDIT, json!({"id": first, "text": "hello"}))
        .await;
    assert_eq!(data["editMessage"]["text"], "hello");
    assert!(data["editMessage"]["editedAt"].is_string(), "{data}");
    assert!(data["editMessage"]["deletedAt"].is_null());

    let data = app.ok_as(Some(1), DELETE, json!({"id": second})).await;
    assert_eq!(data["deleteMessage"]["text"], "");
    assert!(data["deleteMessage"]["deletedAt"].is_string(), "{data}");
    // Deleting the tombstone again changes nothing.
    let again = app.ok_as(Some(1), DELETE, json!({"id": second})).await;
    assert_eq!(again["deleteMessage"], data["deleteMessage"]);

    // Deleted messages are not unread.
    let unread = app
        .ok_as(
            Some(2),
            "query($id: ID!) { room(id: $id) { unreadCount } }",
            json!({"id": room}),
        )
        .await;
    assert_eq!(unread["room"]["unreadCount"], 1);

    // GraphQL history: the edit, and the tombstone in its place.
    let history = nodes(&app.ok_as(Some(2), HISTORY, json!({"id": room})).await);
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello", "", "hi"]);
    assert!(history[1]["deletedAt"].is_string());

    // The legacy history and unseen paths: edited text, no deleted message.
    let room_path = format!("/chat/messages/{room}/?user_id=1");
    let body = legacy(&app, &room_path).await;
    assert_eq!(legacy_texts(&body["data"]), ["hello", "hi"]);
    let body = legacy(&app, "/chat/messages/unseen/?user_id=2").await;
    assert_eq!(legacy_texts(&body["data"][0]), ["hello"]);

    // An edit of an edited message shows at once everywhere (caches included).
    app.ok_as(Some(1), EDIT, json!({"id": first, "text": "hello all"}))
        .await;
    let body = legacy(&app, &room_path).await;
    assert_eq!(legacy_texts(&body["data"]), ["hello all", "hi"]);
    let history = nodes(&app.ok_as(Some(2), HISTORY, json!({"id": room})).await);
    assert_eq!(history[0]["text"], "hello all");

    // Only the sender, only members, only with identity.
    let body = app
        .graphql_as(Some(2), EDIT, json!({"id": first, "text": "mine now"}))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let body = app.graphql_as(Some(2), DELETE, json!({"id": first})).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let body = app.graphql_as(Some(5), DELETE, json!({"id": kept})).await;
    assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
    let body = app
        .graphql_as(None, EDIT, json!({"id": first, "text": "x"}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    // A tombstone cannot be edited back to life.
    let body = app
        .graphql_as(Some(1), EDIT, json!({"id": second, "text": "back"}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    // Texts follow the send rule; unknown and malformed ids are clear.
    for text in ["", &"x".repeat(1025)] {
        let body = app
            .graphql_as(Some(1), EDIT, json!({"id": first, "text": text}))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert!(
            body["errors"][0]["extensions"]["fields"]["text"].is_array(),
            "{body}"
        );
    }
    let body = app
        .graphql_as(Some(1), EDIT, json!({"id": first, "text": "a\u{0}b"}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    let body = app
        .graphql_as(Some(1), EDIT, json!({"id": 999_999, "text": "x"}))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
    let body = app
        .graphql_as(Some(1), EDIT, json!({"id": "nope", "text": "x"}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    let history = nodes(&app.ok_as(Some(2), HISTORY, json!({"id": room})).await);
    assert_eq!(history[0]["text"], "hello all");
}

async fn reactions_are_counted_per_emoji(app: TestApp) {
    let room = app.create_room(1, "r", &["user_2", "user_3"]).await;
    let message = app.store_message(room, 1, "party?").await;
    let react = |user: i64, emoji: &str| {
        app.ok_as(Some(user), REACT, json!({"id": message, "emoji": emoji}))
    };
    react(2, "👍").await;
    react(3, "👍").await;
    react(3, "🎉").await;
    // Again: nothing changes.
    let data = react(3, "👍").await;
    assert_eq!(
        data["addReaction"]["reactions"],
        json!([
            {"emoji": "👍", "count": 2, "viewerReacted": true},
            {"emoji": "🎉", "count": 1, "viewerReacted": true},
        ])
    );
    let history = nodes(&app.ok_as(Some(1), HISTORY, json!({"id": room})).await);
    assert_eq!(
        history[0]["reactions"],
        json!([
            {"emoji": "👍", "count": 2, "viewerReacted": false},
            {"emoji": "🎉", "count": 1, "viewerReacted": false},
        ])
    );
    let data = app
        .ok_as(Some(3), UNREACT, json!({"id": message, "emoji": "👍"}))
        .await;
    assert_eq!(
        data["removeReaction"]["reactions"],
        json!([
            {"emoji": "👍", "count": 1, "viewerReacted": false},
            {"emoji": "🎉", "count": 1, "viewerReacted": true},
        ])
    );
    // Removing what is not there changes nothing.
    app.ok_as(Some(3), UNREACT, json!({"id": message, "emoji": "👍"}))
        .await;

    // Bad emoji, outsiders, deleted messages, too many.
    for emoji in [
        "",
        "ok",
        "<script>",
        "👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍",
        "a\u{0}",
        // Not one emoji: two, a run, a stray joiner or regional indicator,
        // text presentation, a keycap with extra caps.
        "👍👎",
        "👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍",
        "↔↔↔",
        "\u{200d}👍",
        "🇦",
        "🇦🇧🇨",
        "👍\u{FE0E}\u{FE0E}\u{FE0E}\u{FE0E}",
        "1\u{FE0F}\u{20E3}\u{20E3}\u{20E3}",
    ] {
        let body = app
            .graphql_as(Some(2), REACT, json!({"id": message, "emoji": emoji}))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{emoji:?}: {body}");
    }
    let body = app
        .graphql_as(Some(9), REACT, json!({"id": message, "emoji": "👍"}))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
    let body = app
        .graphql_as(None, REACT, json!({"id": message, "emoji": "👍"}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    let many = [
        "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰",
        "😗", "😙", "🥲", "😚", "🙂", "🤗",
    ];
    let mut refused = 0;
    for emoji in many {
        let body = app
            .graphql_as(Some(2), REACT, json!({"id": message, "emoji": emoji}))
            .await;
        if body.get("errors").is_some() {
            assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
            refused += 1;
        }
    }
    // user_2 had one already: 19 more fit, the last two do not.
    assert_eq!(refused, 2);
    // A message carries at most 50 different emoji: 21 so far, 19 more
    // from user_3, 10 from user_1, then no new one (a present one is fine).
    let animals: Vec<String> = (0x1F400..0x1F420)
        .map(|c| char::from_u32(c).unwrap().to_string())
        .collect();
    for (user, emoji) in animals[..19]
        .iter()
        .map(|e| (3, e))
        .chain(animals[19..29].iter().map(|e| (1, e)))
    {
        app.ok_as(Some(user), REACT, json!({"id": message, "emoji": emoji}))
            .await;
    }
    let body = app
        .graphql_as(Some(1), REACT, json!({"id": message, "emoji": animals[29]}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    app.ok_as(Some(1), REACT, json!({"id": message, "emoji": "🎉"}))
        .await;

    app.ok_as(Some(1), DELETE, json!({"id": message})).await;
    let history = nodes(&app.ok_as(Some(1), HISTORY, json!({"id": room})).await);
    assert_eq!(history[0]["reactions"], json!([]));
    let body = app
        .graphql_as(Some(2), REACT, json!({"id": message, "emoji": "👍"}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
}

async fn replies_and_threads(app: TestApp) {
    let room = app.create_room(1, "r", &["user_2"]).await;
    let other = app.create_room(3, "elsewhere", &[]).await;
    let parent = app.store_message(room, 1, "who's in?").await;
    let foreign = app.store_message(other, 3, "not yours").await;
    let send = "mutation($room: ID!, $text: String!, $to: ID) {
        sendGroupMessage(roomId: $room, text: $text, replyToId: $to) { id } }";
    for text in ["me", "me too"] {
        let data = app
            .ok_as(
                Some(2),
                send,
                json!({"room": room, "text": text, "to": parent}),
            )
            .await;
        let task = app
            .finished_task(data["sendGroupMessage"]["id"].as_str().unwrap())
            .await;
        assert_eq!(task["state"], "SUCCESS", "{task}");
    }
    // A reply must answer a message of its own room: the task fails.
    let data = app
        .ok_as(
            Some(1),
            send,
            json!({"room": room, "text": "x", "to": foreign}),
        )
        .await;
    let task = app
        .finished_task(data["sendGroupMessage"]["id"].as_str().unwrap())
        .await;
    assert_eq!(task["state"], "FAILURE", "{task}");
    assert_eq!(task["error"]["kind"], "ValidationError", "{task}");
    // A direct reply answers a message of the pair's room.
    let direct = "mutation($to: ID!, $text: String!, $reply: ID) {
        sendDirectMessage(toUserId: $to, text: $text, replyToId: $reply) { id } }";
    let data = app
        .ok_as(
            Some(1),
            direct,
            json!({"to": 2, "text": "dm", "reply": parent}),
        )
        .await;
    let task = app
        .finished_task(data["sendDirectMessage"]["id"].as_str().unwrap())
        .await;
    assert_eq!(task["state"], "FAILURE", "{task}");

    let thread = "query($room: ID!, $id: ID!) { room(id: $room) {
        thread(messageId: $id) { totalCount edges { node { text replyTo { id } } } } } }";
    let data = app
        .ok_as(Some(1), thread, json!({"room": room, "id": parent}))
        .await;
    let replies = &data["room"]["thread"];
    assert_eq!(replies["totalCount"], 2);
    assert_eq!(replies["edges"][0]["node"]["text"], "me");
    assert_eq!(
        replies["edges"][1]["node"]["replyTo"]["id"],
        parent.to_string()
    );
    // Another room's message has no thread here, and its replies are not
    // counted here; outsiders see none.
    let data = app
        .ok_as(
            Some(3),
            send,
            json!({"room": other, "text": "re", "to": foreign}),
        )
        .await;
    app.finished_task(data["sendGroupMessage"]["id"].as_str().unwrap())
        .await;
    let data = app
        .ok_as(Some(1), thread, json!({"room": room, "id": foreign}))
        .await;
    assert_eq!(data["room"]["thread"]["totalCount"], 0);
    assert_eq!(data["room"]["thread"]["edges"], json!([]));
    let body = app
        .graphql_as(Some(3), thread, json!({"room": room, "id": parent}))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");

    // The parent deleted: replies still name it, as a tombstone.
    app.ok_as(Some(1), DELETE, json!({"id": parent})).await;
    let history = nodes(&app.ok_as(Some(2), HISTORY, json!({"id": room})).await);
    assert_eq!(history[0]["replyCount"], 2);
    let reply = &history[1];
    assert_eq!(reply["replyTo"]["id"], parent.to_string());
    assert_eq!(reply["replyTo"]["text"], "");
    assert!(reply["replyTo"]["deletedAt"].is_string(), "{reply}");
}

async fn mentions_name_members(app: TestApp) {
    let room = app.create_room(1, "team", &["user_2", "user_3"]).await;
    let mention = app
        .store_message(room, 1, "@user_2 and @user_3, also @user_9 and a@user_2")
        .await;
    app.store_message(room, 1, "no mention").await;
    app.store_message(room, 3, "hey @user_2.").await;
    let counts = "query($id: ID!) { room(id: $id) { unreadCount unreadMentionCount } }";
    let data = app.ok_as(Some(2), counts, json!({"id": room})).await;
    assert_eq!(data["room"]["unreadMentionCount"], 2);
    assert_eq!(data["room"]["unreadCount"], 3);
    let data = app.ok_as(Some(3), counts, json!({"id": room})).await;
    assert_eq!(data["room"]["unreadMentionCount"], 1);

    let history = nodes(&app.ok_as(Some(2), HISTORY, json!({"id": room})).await);
    assert_eq!(history[0]["mentioned"], true);
    // user_9 is not a member: plain text.
    assert_eq!(
        history[0]["mentions"],
        json!([{"username": "user_2"}, {"username": "user_3"}])
    );
    assert_eq!(history[1]["mentioned"], false);
    assert_eq!(history[2]["mentioned"], true);

    // Seen mentions are not unread; an edit that drops a mention drops it.
    app.ok_as(
        Some(2),
        "mutation($id: ID!, $up: ID) { markRoomSeen(roomId: $id, upToMessageId: $up) { markedCount } }",
        json!({"id": room, "up": mention}),
    )
    .await;
    let data = app.ok_as(Some(2), counts, json!({"id": room})).await;
    assert_eq!(data["room"]["unreadMentionCount"], 1);
    let data = app.ok_as(Some(3), counts, json!({"id": room})).await;
    assert_eq!(data["room"]["unreadMentionCount"], 1);
    app.ok_as(
        Some(1),
        EDIT,
        json!({"id": mention, "text": "never mind @user_2"}),
    )
    .await;
    let data = app.ok_as(Some(3), counts, json!({"id": room})).await;
    assert_eq!(data["room"]["unreadMentionCount"], 0);
    let history = nodes(&app.ok_as(Some(2), HISTORY, json!({"id": room})).await);
    assert_eq!(history[0]["mentions"], json!([{"username": "user_2"}]));
}

crate::scenarios!(
    senders_edit_and_delete_their_messages,
    reactions_are_counted_per_emoji,
    replies_and_threads,
    mentions_name_members,
);
