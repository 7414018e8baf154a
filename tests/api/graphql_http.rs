//! GraphQL over HTTP: media types, status codes, methods, batching, limits,
//! GraphiQL assets.

use reqwest::{StatusCode, header::CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

async fn post(app: &TestApp, accept: Option<&str>, body: Value) -> (StatusCode, String, Value) {
    let mut request = app.client.post(app.url("/graphql")).json(&body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let media = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    (status, media, response.json().await.unwrap())
}

async fn response_media_type_follows_accept(app: TestApp) {
    let query = json!({"query": "{ users(first: 1) { totalCount } }"});
    for (accept, expected) in [
        (None, "application/json"),
        (Some("*/*"), "application/json"),
        (Some("application/json"), "application/json"),
        (Some(GRAPHQL_RESPONSE), GRAPHQL_RESPONSE),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            GRAPHQL_RESPONSE,
        ),
    ] {
        let (status, media, body) = post(&app, accept, query.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(media.starts_with(expected), "{accept:?} -> {media}");
        assert_eq!(body["data"]["users"]["totalCount"], 15);
    }
}

async fn request_errors_are_400_without_data_for_graphql_response_json(app: TestApp) {
    for bad in [
        json!({"query": "{ users { "}),
        json!({"query": "{ noSuchField }"}),
        json!({"query": "query($n: Int!) { users(first: $n) { totalCount } }", "variables": {"n": "x"}}),
        json!({"query": "query($n: Int!) { users(first: $n) { totalCount } }"}),
    ] {
        let (status, _, body) = post(&app, Some(GRAPHQL_RESPONSE), bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body.get("data").is_none(), "{bad}: {body}");
        assert!(body["errors"][0]["message"].is_string());

        let (status, _, body) = post(&app, Some("application/json"), bad.clone()).await;
        assert_eq!(status, StatusCode::OK, "legacy JSON answers 200: {bad}");
        assert!(body["errors"][0]["message"].is_string());
    }
    // A resolver error is not a request error: 200 with data.
    let (status, _, body) = post(
        &app,
        Some(GRAPHQL_RESPONSE),
        json!({"query": "{ user(id: 999) { id } }"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["user"], Value::Null);
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
}

async fn non_json_posts_are_refused(app: TestApp) {
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = app
            .client
            .post(app.url("/graphql"))
            .body(r#"{"query":"{ users { totalCount } }"}"#);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    let response = app
        .client
        .post(app.url("/graphql"))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(r#"{"query":"{ users { totalCount } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn get_runs_queries_only(app: TestApp) {
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { logout }")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        response.headers()["allow"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            (
                "query",
                "query A { users { totalCount } } mutation B { logout }",
            ),
            ("operationName", "B"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            (
                "query",
                "query($n: Int) { users(first: $n) { edges { node { id } } } }",
            ),
            ("variables", r#"{"n": 2}"#),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["users"]["edges"].as_array().unwrap().len(), 2);

    let response = app.client.put(app.url("/graphql")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

async fn batches_work_and_are_bounded(app: TestApp) {
    let (status, _, body) = post(
        &app,
        None,
        json!([
            {"query": "{ user(id: 1) { username } }"},
            {"query": "{ user(id: 2) { username } }"}
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["data"]["user"]["username"], "user_1");
    assert_eq!(body[1]["data"]["user"]["username"], "user_2");

    let many: Vec<Value> = (0..21)
        .map(|_| json!({"query": "{ users { totalCount } }"}))
        .collect();
    let (status, _, body) = post(&app, None, Value::Array(many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("20")
    );
}

async fn graphiql_is_served_offline(app: TestApp) {
    let html = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut assets = 0;
    for part in html
        .split("src=\"")
        .skip(1)
        .chain(html.split("href=\"").skip(1))
    {
        let url = part.split('"').next().unwrap();
        if url.starts_with("data:") {
            continue;
        }
        assert!(
            url.starts_with("/graphiql/") || url == "/favicon.ico",
            "only local assets: {url}"
        );
        let response = app.client.get(app.url(url)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert!(!response.bytes().await.unwrap().is_empty());
        assets += 1;
    }
    assert!(assets >= 5, "{html}");
    let response = app
        .client
        .get(app.url("/graphiql/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// A browser opening a shared `?query=` link gets GraphiQL (which fills its
/// editor from the address), not the raw answer; the page has a favicon.
async fn graphiql_opens_shared_links(app: TestApp) {
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ __typename }")])
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.text().await.unwrap().contains("graphiql-init.js"));
    let init = app
        .client
        .get(app.url("/graphiql/graphiql-init.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("onEditQuery") && init.contains("replaceState"));
    let icon = app
        .client
        .get(app.url("/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), StatusCode::OK);
    assert_eq!(icon.headers()["content-type"], "image/x-icon");
    // A subscription over GET is told where subscriptions go.
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "subscription { unreadMessages { id } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("websocket"),
        "{body}"
    );
}

/// A request without a document has invalid parameters: a 400.
async fn requests_without_a_query_are_400(app: TestApp) {
    for body in [json!({"qeury": "{ __typename }"}), json!({"query": ""})] {
        let response = app
            .client
            .post(app.url("/graphql"))
            .header("accept", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

crate::scenarios!(
    graphiql_opens_shared_links,
    requests_without_a_query_are_400,
    response_media_type_follows_accept,
    request_errors_are_400_without_data_for_graphql_response_json,
    non_json_posts_are_refused,
    get_runs_queries_only,
    batches_work_and_are_bounded,
    graphiql_is_served_offline,
);

#[tokio::test]
async fn complexity_limit_refuses_expensive_queries() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.graphql_max_complexity = 500)
        .await
        .unwrap();
    let body = app
        .graphql_as(
            Some(1),
            "{ rooms(first: 100) { edges { node { messages(first: 100) { edges { node { text } } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["limit"], "GRAPHQL_MAX_COMPLEXITY",
        "{body}"
    );
    let body = app
        .graphql_as(Some(1), "{ rooms(first: 5) { totalCount } }", json!({}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.graphql_introspection = false)
        .await
        .unwrap();
    let body = app
        .graphql("{ __schema { types { name } } }", json!({}))
        .await;
    assert!(body["errors"].is_array(), "{body}");
    let body = app.graphql("{ users { totalCount } }", json!({})).await;
    assert_eq!(body["data"]["users"]["totalCount"], 15);
}
