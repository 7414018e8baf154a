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

crate::scenarios!(
    search_finds_what_the_viewer_can_read,
    bad_searches_are_clear
);
