//! HTTP behaviour around the APIs: probes, request ids, body limits,
//! malformed requests, GraphiQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};

async fn probes_report_health_and_readiness(app: TestApp) {
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    if app.config.redis_url.is_some() {
        assert_eq!(body["checks"]["redis"], "ok");
    }
}

async fn responses_carry_a_request_id(app: TestApp) {
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

async fn oversized_bodies_are_refused(app: TestApp) {
    let padding = "x".repeat(app.config.body_limit_bytes + 1);
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(
            json!({"query": "{ users { totalCount } }", "extensions": {"pad": padding}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn malformed_graphql_requests_get_client_errors(app: TestApp) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({"query": "{ users { "}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(
        status.is_success() || status == StatusCode::BAD_REQUEST,
        "{status}"
    );
    assert!(body["errors"][0]["message"].as_str().is_some(), "{body}");

    let body = app.graphql("{ noSuchField }", json!({})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("noSuchField")
    );
}

async fn queries_work_over_get(app: TestApp) {
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ users(first: 2) { totalCount } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["users"]["totalCount"], 15);
}

async fn browsers_get_graphiql(app: TestApp) {
    let response = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.to_lowercase().contains("graphiql"));
}

async fn metrics_count_requests_operations_and_jobs(app: TestApp) {
    app.client.get(app.url("/users/5/")).send().await.unwrap();
    app.ok("query Lookup { users { totalCount } }", json!({}))
        .await;
    let room = app.create_room(1, "r", &[]).await;
    let task = app.send_group(1, room, "counted").await;
    app.finished_task(&task).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "# TYPE http_request_duration_seconds histogram",
        "route=\"/users/{id}/\",status=\"200\"",
        "graphql_operation_duration_seconds_count{type=\"query\",operation=\"Lookup\"}",
        "job_duration_seconds_count{kind=\"send_group_message\",outcome=\"success\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

crate::scenarios!(
    metrics_count_requests_operations_and_jobs,
    probes_report_health_and_readiness,
    responses_carry_a_request_id,
    oversized_bodies_are_refused,
    malformed_graphql_requests_get_client_errors,
    queries_work_over_get,
    browsers_get_graphiql,
);

#[tokio::test]
async fn depth_limit_refuses_deep_queries() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.graphql_max_depth = 3)
        .await
        .unwrap();
    let body = app
        .graphql(
            "{ users { edges { node { profile { status } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["limit"], "GRAPHQL_MAX_DEPTH",
        "{body}"
    );
}
