//! Rooms over GraphQL: create, join, leave, history, direct rooms, visibility.

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code};

const ROOM: &str = "query($id: ID!) { room(id: $id) {
    id name isDirect viewerIsMember members { username }
    memberships { user { username } isCurrent leftAt } } }";

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

async fn create_room_adds_creator_and_known_members(app: TestApp) {
    let id = app
        .create_room(3, "family", &["user_7", "user_2", "nobody"])
        .await;
    let data = app.ok_as(Some(3), ROOM, json!({"id": id})).await;
    let room = &data["room"];
    assert_eq!(room["name"], "family");
    assert_eq!(room["isDirect"], false);
    assert_eq!(room["viewerIsMember"], true);
    assert_eq!(names(&room["members"]), ["user_2", "user_3", "user_7"]);
}

async fn room_names_are_unique_and_not_blank(app: TestApp) {
    app.create_room(1, "family", &[]).await;
    let create = "mutation($n: String!) { createRoom(name: $n) { id } }";
    let body = app
        .graphql_as(Some(2), create, json!({"n": "family"}))
        .await;
    assert_eq!(error_code(&body), "CONFLICT");
    let body = app.graphql_as(Some(2), create, json!({"n": "   "})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let body = app.graphql(create, json!({"n": "anon"})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

const JOIN: &str = "mutation($id: ID!) { joinRoom(roomId: $id) { id members { username } } }";
const LEAVE: &str = "mutation($id: ID!) { leaveRoom(roomId: $id) { roomId roomDeleted } }";

async fn join_and_leave_keep_history(app: TestApp) {
    let id = app.create_room(1, "club", &["user_2"]).await;
    let data = app.ok_as(Some(4), JOIN, json!({"id": id})).await;
    assert_eq!(
        names(&data["joinRoom"]["members"]),
        ["user_1", "user_2", "user_4"]
    );

    let body = app.graphql_as(Some(4), JOIN, json!({"id": id})).await;
    assert_eq!(error_code(&body), "CONFLICT", "joining twice");

    let data = app.ok_as(Some(4), LEAVE, json!({"id": id})).await;
    assert_eq!(data["leaveRoom"]["roomDeleted"], false);
    let body = app.graphql_as(Some(4), LEAVE, json!({"id": id})).await;
    assert_eq!(
        error_code(&body),
        "BAD_USER_INPUT",
        "leaving when not a member"
    );

    // Re-joining starts a new membership; the old one stays in the history.
    app.ok_as(Some(4), JOIN, json!({"id": id})).await;
    let data = app.ok_as(Some(1), ROOM, json!({"id": id})).await;
    let history: Vec<(String, bool, bool)> = data["room"]["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"]["username"].as_str().unwrap().to_owned(),
                m["isCurrent"].as_bool().unwrap(),
                m["leftAt"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("user_1".to_owned(), true, false),
            ("user_2".to_owned(), true, false),
            ("user_4".to_owned(), false, true),
            ("user_4".to_owned(), true, false),
        ]
    );
}

async fn unknown_rooms_and_ids(app: TestApp) {
    let body = app.graphql_as(Some(1), JOIN, json!({"id": 9999})).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app.graphql_as(Some(1), LEAVE, json!({"id": 9999})).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app.graphql_as(Some(1), ROOM, json!({"id": "x"})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let body = app.graphql_as(Some(1), ROOM, json!({"id": 9999})).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
}

async fn last_member_leaving_deletes_the_room(app: TestApp) {
    let id = app.create_room(5, "solo", &["user_6"]).await;
    let data = app.ok_as(Some(6), LEAVE, json!({"id": id})).await;
    assert_eq!(data["leaveRoom"]["roomDeleted"], false);
    let data = app.ok_as(Some(5), LEAVE, json!({"id": id})).await;
    assert_eq!(data["leaveRoom"]["roomDeleted"], true);
    let body = app.graphql_as(Some(5), ROOM, json!({"id": id})).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    // The name is free again.
    app.create_room(5, "solo", &[]).await;
}

async fn members_only_fields_are_refused_to_others(app: TestApp) {
    let id = app.create_room(1, "private-ish", &["user_2"]).await;
    // Anyone may see a group room's name.
    let data = app
        .ok_as(
            Some(9),
            "query($id: ID!) { room(id: $id) { name viewerIsMember } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(data["room"]["name"], "private-ish");
    assert_eq!(data["room"]["viewerIsMember"], false);
    for field in [
        "members { username }",
        "memberships { id }",
        "messages { totalCount }",
        "unreadCount",
    ] {
        let query = format!("query($id: ID!) {{ room(id: $id) {{ {field} }} }}");
        let body = app.graphql_as(Some(9), &query, json!({"id": id})).await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{field}: {body}");
        let body = app.graphql(&query, json!({"id": id})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{field}: {body}");
    }
}

async fn rooms_lists_joined_or_all_groups(app: TestApp) {
    let a = app.create_room(1, "a", &["user_2"]).await;
    let b = app.create_room(3, "b", &[]).await;
    let direct = app.direct_room(1, 4).await;
    let ids = |data: &Value| -> Vec<i64> {
        data["rooms"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let data = app
        .ok_as(
            Some(1),
            "{ rooms { totalCount edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(ids(&data), [a, direct]);
    assert_eq!(data["rooms"]["totalCount"], 2);
    let data = app
        .ok(
            "{ rooms(scope: ALL_GROUPS) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(ids(&data), [a, b]);
    let body = app.graphql("{ rooms { totalCount } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

async fn direct_rooms_belong_to_their_pair(app: TestApp) {
    let query =
        "query($u: ID!) { directRoom(withUserId: $u) { id name isDirect members { username } } }";
    let data = app.ok_as(Some(2), query, json!({"u": 3})).await;
    assert_eq!(
        data["directRoom"],
        Value::Null,
        "no room before the first message"
    );

    let id = app.direct_room(3, 2).await;
    assert_eq!(app.direct_room(2, 3).await, id, "one room per pair");
    let data = app.ok_as(Some(2), query, json!({"u": 3})).await;
    let room = &data["directRoom"];
    assert_eq!(room["name"], "user_2 - user_3");
    assert_eq!(room["isDirect"], true);
    assert_eq!(names(&room["members"]), ["user_2", "user_3"]);
    let data = app.ok_as(Some(3), query, json!({"u": 2})).await;
    assert_eq!(data["directRoom"]["id"], id.to_string());

    let body = app.graphql_as(Some(2), query, json!({"u": 999})).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app.graphql_as(Some(4), ROOM, json!({"id": id})).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "a third user cannot see it");
    let body = app.graphql_as(Some(4), JOIN, json!({"id": id})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["message"], "Can't join a private chat");
}

async fn concurrent_first_messages_make_one_direct_room(app: TestApp) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let db = app.db.clone();
        let events = app.events.clone();
        let (a, b) = if i % 2 == 0 { (5, 8) } else { (8, 5) };
        tasks.push(tokio::spawn(async move {
            chat_gateway::domain::rooms::find_or_create_direct(&db, events.as_ref(), a, b)
                .await
                .map(|r| r.id)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().expect("no error under the race"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

async fn user_rooms_hide_other_peoples_direct_rooms(app: TestApp) {
    let group = app.create_room(2, "g", &[]).await;
    let direct = app.direct_room(2, 3).await;
    let query = "{ user(id: 2) { rooms { id } } }";
    let ids = |data: &Value| -> Vec<String> {
        data["user"]["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let data = app.ok_as(Some(2), query, json!({})).await;
    assert_eq!(ids(&data), [group.to_string(), direct.to_string()]);
    let data = app.ok_as(Some(3), query, json!({})).await;
    assert_eq!(ids(&data), [group.to_string(), direct.to_string()]);
    let data = app.ok_as(Some(9), query, json!({})).await;
    assert_eq!(ids(&data), [group.to_string()]);
    let data = app.ok(query, json!({})).await;
    assert_eq!(ids(&data), [group.to_string()]);
}

async fn deleting_a_user_ends_memberships_and_keeps_messages(app: TestApp) {
    let room = app.create_room(1, "r", &["user_2"]).await;
    let solo = app.create_room(2, "solo", &[]).await;
    app.store_message(room, 2, "bye").await;
    app.ok_as(Some(2), "mutation { deleteUser(id: 2) }", json!({}))
        .await;
    let data = app
        .ok_as(
            Some(1),
            "query($id: ID!) { room(id: $id) { members { username }
               messages { edges { node { text sender { username } } } } } }",
            json!({"id": room}),
        )
        .await;
    assert_eq!(names(&data["room"]["members"]), ["user_1"]);
    let node = &data["room"]["messages"]["edges"][0]["node"];
    assert_eq!(node["text"], "bye");
    assert_eq!(node["sender"], Value::Null);
    // The room only user_2 was in went with them.
    let body = app.graphql_as(Some(1), ROOM, json!({"id": solo})).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
}

crate::scenarios!(
    create_room_adds_creator_and_known_members,
    room_names_are_unique_and_not_blank,
    join_and_leave_keep_history,
    unknown_rooms_and_ids,
    last_member_leaving_deletes_the_room,
    members_only_fields_are_refused_to_others,
    rooms_lists_joined_or_all_groups,
    direct_rooms_belong_to_their_pair,
    concurrent_first_messages_make_one_direct_room,
    user_rooms_hide_other_peoples_direct_rooms,
    deleting_a_user_ends_memberships_and_keeps_messages,
);
