//! GraphQL admission limits: hostile documents are refused before they run,
//! with a 400 naming the limit, and the service stays healthy meanwhile.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// `fragment f1 on Query { ...f0 ...f0 } ... query { ...fN }`: 2^N fields.
fn fan_out(levels: usize) -> String {
    let mut doc = String::from("fragment f0 on Query { __typename }\n");
    for level in 1..=levels {
        let previous = level - 1;
        doc.push_str(&format!(
            "fragment f{level} on Query {{ ...f{previous} ...f{previous} }}\n"
        ));
    }
    doc.push_str(&format!("query {{ ...f{levels} }}"));
    doc
}

/// POST a document; returns the status and the body.
async fn post(app: &TestApp, query: &str, variables: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("x-user-id", "1")
        .json(&json!({"query": query, "variables": variables}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer, in time");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

fn refused_by(status: u16, body: &Value, limit: &str) {
    assert_eq!(status, 400, "{body}");
    assert!(body.get("data").is_none(), "{body}");
    let extensions = &body["errors"][0]["extensions"];
    assert_eq!(extensions["code"], "LIMIT_EXCEEDED", "{body}");
    assert_eq!(extensions["limit"], limit, "{body}");
}

async fn healthy(app: &TestApp) {
    let response = app
        .client
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(response.status(), 200);
}

async fn fragment_fan_out_is_refused_before_it_runs(app: TestApp) {
    let document = fan_out(30);
    assert!(document.len() < 2_000);
    let (status, body) = post(&app, &document, json!({})).await;
    refused_by(status, &body, "GRAPHQL_MAX_FIELDS");
    // Many at once leave the service answering.
    let mut refusals = Vec::new();
    for _ in 0..16 {
        let client = app.client.clone();
        let url = app.url("/graphql");
        let document = document.clone();
        refusals.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"query": document}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    healthy(&app).await;
    for refusal in refusals {
        assert_eq!(refusal.await.unwrap().unwrap(), 400);
    }
    // Fragments far past 2^64 fields: still a clean refusal.
    let (status, body) = post(&app, &fan_out(90), json!({})).await;
    refused_by(status, &body, "GRAPHQL_MAX_FIELDS");
}

async fn alias_and_duplicate_floods_are_refused(app: TestApp) {
    let aliases: String = (0..10_000)
        .map(|i| format!("a{i}: viewer {{ id }} "))
        .collect();
    let (status, body) = post(&app, &format!("{{ {aliases} }}"), json!({})).await;
    refused_by(status, &body, "GRAPHQL_MAX_TOKENS");
    let aliases: String = (0..40).map(|i| format!("a{i}: viewer {{ id }} ")).collect();
    let (status, body) = post(&app, &format!("{{ {aliases} }}"), json!({})).await;
    refused_by(status, &body, "GRAPHQL_MAX_ALIASES");
    let roots: String = (0..25).map(|_| "viewer { id } ").collect();
    let (status, body) = post(&app, &format!("{{ {roots} }}"), json!({})).await;
    refused_by(status, &body, "GRAPHQL_MAX_ROOT_FIELDS");
    // Duplicates through a fragment: few tokens, many fields.
    let fields: String = (0..300).map(|_| "username ").collect();
    let document = format!(
        "fragment U on User {{ {fields} }} {{ viewer {{ ...U ...U ...U ...U ...U ...U ...U }} }}"
    );
    let (status, body) = post(&app, &document, json!({})).await;
    refused_by(status, &body, "GRAPHQL_MAX_FIELDS");
    healthy(&app).await;
}

async fn deep_queries_are_refused_but_introspection_is_not(app: TestApp) {
    let deep = "{ viewer { rooms { members { rooms { members { rooms { members { rooms { members \
                { rooms { members { rooms { members { id } } } } } } } } } } } } } }";
    let (status, body) = post(&app, deep, json!({})).await;
    refused_by(status, &body, "GRAPHQL_MAX_DEPTH");
    // graphql-js's TypeRef nests `ofType` far past the data depth limit.
    let mut type_ref = String::from("kind name");
    for _ in 0..9 {
        type_ref = format!("kind name ofType {{ {type_ref} }}");
    }
    let introspection = format!(
        "query IntrospectionQuery {{ __schema {{ queryType {{ name }} types {{ ...FullType }} \
           directives {{ name args {{ ...InputValue }} }} }} }}
         fragment FullType on __Type {{ kind name fields(includeDeprecated: true) {{ name
           args {{ ...InputValue }} type {{ ...TypeRef }} }} inputFields {{ ...InputValue }}
           interfaces {{ ...TypeRef }} enumValues(includeDeprecated: true) {{ name }}
           possibleTypes {{ ...TypeRef }} }}
         fragment InputValue on __InputValue {{ name type {{ ...TypeRef }} defaultValue }}
         fragment TypeRef on __Type {{ {type_ref} }}"
    );
    let (status, body) = post(&app, &introspection, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert!(body["data"]["__schema"]["types"].as_array().unwrap().len() > 10);
    // Introspection lists nested past what any client asks for multiply
    // the answer: refused.
    let (status, body) = post(
        &app,
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
        json!({}),
    )
    .await;
    refused_by(status, &body, "introspection");
}

async fn huge_argument_lists_are_refused(app: TestApp) {
    let names: Vec<String> = (0..50_000).map(|i| format!("user_{i}")).collect();
    let (status, body) = post(
        &app,
        "mutation($m: [String!]!) { createRoom(name: \"big\", memberUsernames: $m) { id } }",
        json!({"m": names}),
    )
    .await;
    refused_by(status, &body, "GRAPHQL_MAX_LIST_ITEMS");
    let literal: String = (0..1_500).map(|i| format!("\"u{i}\" ")).collect();
    let (status, body) = post(
        &app,
        &format!("mutation {{ createRoom(name: \"big\", memberUsernames: [{literal}]) {{ id }} }}"),
        json!({}),
    )
    .await;
    refused_by(status, &body, "GRAPHQL_MAX_LIST_ITEMS");
}

async fn fragment_cycles_do_not_hang(app: TestApp) {
    let (status, body) = post(
        &app,
        "{ ...a } fragment a on Query { viewer { id } ...b } fragment b on Query { ...a }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("spreads itself")
    );
}

async fn bad_strings_are_refused_naming_the_field(app: TestApp) {
    let (status, body) = post(
        &app,
        "query($u: String) { users(filter: {username: $u}) { totalCount } }",
        json!({"u": "a\u{0}b"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(
        body["errors"][0]["extensions"]["fields"]["u"].is_array(),
        "{body}"
    );
    let (status, body) = post(
        &app,
        r#"mutation { login(username: "user_1\u0000", password: "x") { token } }"#,
        json!({}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["extensions"]["fields"]["username"].is_array(),
        "{body}"
    );
    let long = "x".repeat(5_000);
    let (status, body) = post(
        &app,
        "mutation($t: String!) { sendGroupMessage(roomId: 1, text: $t) { id } }",
        json!({"t": long}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["extensions"]["fields"]["t"].is_array(),
        "{body}"
    );
    // Nothing reached the database: the service still answers normally.
    let data = app
        .ok_as(Some(1), "{ viewer { username } }", json!({}))
        .await;
    assert_eq!(data["viewer"]["username"], "user_1");
}

async fn response_keys_follow_the_selection_set(app: TestApp) {
    let query = "{ viewer { username id } rooms { totalCount } a: users(first: 1) { totalCount } \
                 b: user(id: 2) { username } }";
    for _ in 0..5 {
        let response = app
            .client
            .post(app.url("/graphql"))
            .header("x-user-id", "1")
            .json(&json!({"query": query}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let data_at = response.find("\"data\"").unwrap();
        let keys: Vec<usize> = ["\"viewer\"", "\"rooms\"", "\"a\"", "\"b\""]
            .iter()
            .map(|k| response[data_at..].find(k).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{response}");
        assert!(
            response.find("\"username\"").unwrap() < response.find("\"id\"").unwrap(),
            "{response}"
        );
    }
}

crate::scenarios!(
    fragment_fan_out_is_refused_before_it_runs,
    alias_and_duplicate_floods_are_refused,
    deep_queries_are_refused_but_introspection_is_not,
    huge_argument_lists_are_refused,
    fragment_cycles_do_not_hang,
    bad_strings_are_refused_naming_the_field,
    response_keys_follow_the_selection_set,
);
