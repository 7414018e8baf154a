//! Message search: only what the viewer can read, ranked, paginated,
//! highlighted; edits and deletes show at once; bad queries are clear.

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code};

const SEARCH: &str = "query($q: String!, $room: ID, $first: Int, $after: String) {
    searchMessages(query: $q, roomId: $room, first: $first, after: $after) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { cursor snippet score node { id text room { name } } } } }";

fn texts(data: &Value) -> Vec<String> {
    data["searchMessages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn search(app: &TestApp, user: i64, vars: Value) -> Value {
    app.ok_as(Some(user), SEARCH, vars).await
}

async fn search_finds_what_the_viewer_can_read(app: TestApp) {
    let family = app.create_room(1, "family", &["user_2"]).await;
    let work = app.create_room(3, "work", &["user_1"]).await;
    let secret = app.create_room(4, "secret", &[]).await;
    app.store_message(family, 1, "Pizza tonight? pizza pizza!")
        .await;
    app.store_message(family, 2, "I'd rather have <b>pizza</b> tomorrow")
        .await;
    let edited = app.store_message(family, 2, "nothing to see").await;
    let deleted = app.store_message(work, 3, "pizza meeting at noon").await;
    app.store_message(work, 3, "Pizzeria report").await;
    app.store_message(secret, 4, "secret pizza").await;

    // user_1 reads family and work; user_4's room is not theirs.
    let data = search(&app, 1, json!({"q": "pizz"})).await;
    let found = texts(&data);
    assert_eq!(data["searchMessages"]["totalCount"], 4, "{data}");
    assert_eq!(found.len(), 4);
    assert!(!found.iter().any(|t| t.contains("secret")), "{found:?}");
    // Three hits rank first; scores never rise.
    assert_eq!(found[0], "Pizza tonight? pizza pizza!");
    let scores: Vec<f64> = data["searchMessages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // Snippets mark the words and escape the rest.
    let snippets: Vec<&str> = data["searchMessages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["snippet"].as_str().unwrap())
        .collect();
    assert!(
        snippets.contains(&"I&#39;d rather have &lt;b&gt;<mark>pizza</mark>&lt;/b&gt; tomorrow"),
        "{snippets:?}"
    );
    // A one-letter word is a whole word, not a prefix.
    assert!(texts(&search(&app, 1, json!({"q": "p"})).await).is_empty());
    let data = search(&app, 1, json!({"q": "d rather"})).await;
    assert_eq!(texts(&data), ["I'd rather have <b>pizza</b> tomorrow"]);
    // Every word must match; a room narrows it.
    let data = search(&app, 1, json!({"q": "pizza NOON"})).await;
    assert_eq!(texts(&data), ["pizza meeting at noon"]);
    let data = search(&app, 1, json!({"q": "pizza", "room": family})).await;
    assert_eq!(data["searchMessages"]["totalCount"], 2);

    // Pages: two at a time, then the rest.
    let data = search(&app, 1, json!({"q": "pizz", "first": 2})).await;
    assert_eq!(texts(&data).len(), 2);
    assert_eq!(data["searchMessages"]["pageInfo"]["hasNextPage"], true);
    let after = data["searchMessages"]["pageInfo"]["endCursor"].clone();
    let rest = search(&app, 1, json!({"q": "pizz", "first": 2, "after": after})).await;
    let mut all = texts(&data);
    all.extend(texts(&rest));
    assert_eq!(all, found);
    assert_eq!(rest["searchMessages"]["pageInfo"]["hasNextPage"], false);

    // Edits and deletes show at once.
    app.ok_as(
        Some(2),
        "mutation($id: ID!) { editMessage(messageId: $id, text: \"actually, pizza\") { id } }",
        json!({"id": edited}),
    )
    .await;
    app.ok_as(
        Some(3),
        "mutation($id: ID!) { deleteMessage(messageId: $id) { id } }",
        json!({"id": deleted}),
    )
    .await;
    let found = texts(&search(&app, 1, json!({"q": "pizza"})).await);
    assert!(found.contains(&"actually, pizza".to_owned()), "{found:?}");
    assert!(!found.iter().any(|t| t.contains("noon")), "{found:?}");
    assert!(texts(&search(&app, 1, json!({"q": "nothing"})).await).is_empty());

    // Leaving a room takes its messages out of reach.
    app.ok_as(
        Some(1),
        "mutation($id: ID!) { leaveRoom(roomId: $id) { roomDeleted } }",
        json!({"id": work}),
    )
    .await;
    let found = texts(&search(&app, 1, json!({"q": "pizz"})).await);
    assert!(!found.iter().any(|t| t.contains("Pizzeria")), "{found:?}");
}

async fn bad_searches_are_clear(app: TestApp) {
    let secret = app.create_room(4, "secret", &[]).await;
    let cases = [
        json!({"q": ""}),
        json!({"q": "  ... !!"}),
        json!({"q": "a b c d e f g h i"}),
        json!({"q": "x".repeat(257)}),
        json!({"q": "a\u{0}b"}),
        json!({"q": "pizza", "first": -1}),
        json!({"q": "pizza", "first": 500}),
        json!({"q": "pizza", "after": "bogus"}),
        json!({"q": "pizza", "room": "x"}),
    ];
    for vars in cases {
        let body = app.graphql_as(Some(1), SEARCH, vars.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{vars}: {body}");
    }
    // A page too large for the cost limit is refused before it runs.
    let body = app
        .graphql_as(Some(1), SEARCH, json!({"q": "pizza", "first": 100_000}))
        .await;
    assert_eq!(error_code(&body), "LIMIT_EXCEEDED", "{body}");
    let body = app
        .graphql_as(Some(1), SEARCH, json!({"q": "pizza", "room": secret}))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let body = app.graphql_as(None, SEARCH, json!({"q": "pizza"})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    // Query syntax of either database is just words here.
    for q in [
        "\"unterminated",
        "a & b | !c",
        "NEAR(a b)",
        "x:* <-> y",
        "col:term",
        "*",
    ] {
        let body = app.graphql_as(Some(1), SEARCH, json!({"q": q})).await;
        assert!(
            body.get("errors").is_none() || error_code(&body) == "BAD_USER_INPUT",
            "{q}: {body}"
        );
    }
}

/// White space wider than a byte before a match (U+00A0 before French
/// punctuation, U+3000) in a long message: the snippet is cut after it,
/// over HTTP and over a websocket, whose other operations live on.
async fn wide_white_space_before_a_match(app: TestApp) {
    let room = app.create_room(1, "francais", &["user_2"]).await;
    let texts = [
        format!("{}nbsptarget", "w\u{a0}".repeat(100)),
        format!("{}nbsptarget fin", "mot\u{3000}".repeat(60)),
        format!(
            "{}Qui vient\u{202f}? nbsptarget\u{a0}: oui",
            "bla\u{a0}".repeat(60)
        ),
    ];
    for text in &texts {
        app.store_message(room, 2, text).await;
    }
    let data = search(&app, 1, json!({"q": "nbsptarget"})).await;
    let snippets: Vec<&str> = data["searchMessages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["snippet"].as_str().unwrap())
        .collect();
    assert_eq!(snippets.len(), 3, "{data}");
    assert!(
        snippets
            .iter()
            .all(|s| s.contains("<mark>nbsptarget</mark>")),
        "{snippets:?}"
    );

    let mut socket = crate::ws::Socket::connect(&app, "graphql-transport-ws").await;
    socket.init(json!({"userId": 1})).await;
    socket
        .subscribe(
            "typing",
            "subscription($r: ID!) { roomMessages(roomId: $r) { text } }",
            json!({"r": room}),
        )
        .await;
    socket
        .subscribe("search", SEARCH, json!({"q": "nbsptarget"}))
        .await;
    let answer = socket.next().await;
    assert_eq!(answer["type"], "next", "{answer}");
    assert_eq!(
        answer["payload"]["data"]["searchMessages"]["totalCount"], 3,
        "{answer}"
    );
    assert_eq!(socket.next().await["type"], "complete");
    // The socket and its other operation live on.
    app.store_message(room, 2, "still here").await;
    let next = socket.next().await;
    assert_eq!(
        next["payload"]["data"]["roomMessages"]["text"], "still here",
        "{next}"
    );
}

/// A viewer's scores depend on what they may read, nothing else: another
/// user writing the word many times in a room of their own moves nothing.
async fn scores_ignore_rooms_the_viewer_cannot_read(app: TestApp) {
    let room = app.create_room(1, "mine", &[]).await;
    app.store_message(room, 1, "one uniqueword in my room")
        .await;
    let score = |data: &Value| {
        data["searchMessages"]["edges"][0]["score"]
            .as_f64()
            .unwrap()
    };
    let before = score(&search(&app, 1, json!({"q": "uniqueword"})).await);
    let private = app.create_room(9, "theirs", &[]).await;
    for _ in 0..5 {
        app.store_message(private, 9, &"uniqueword ".repeat(20))
            .await;
    }
    app.store_message(private, 9, "uniquewordy other").await;
    let after = search(&app, 1, json!({"q": "uniqueword"})).await;
    assert_eq!(after["searchMessages"]["totalCount"], 1, "{after}");
    assert_eq!(score(&after), before, "{after}");
}

crate::scenarios!(
    search_finds_what_the_viewer_can_read,
    bad_searches_are_clear,
    wide_white_space_before_a_match,
    scores_ignore_rooms_the_viewer_cannot_read,
);
