//! Sign-in with bearer tokens, expiry, sign-out, and legacy identity on/off.

use chat_gateway::domain::users::SEED_PASSWORD;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_code, spawn_app_with};

async fn login_issues_a_working_token(app: TestApp) {
    let data = app
        .ok(
            "mutation { login(username: \"user_4\", password: \"Passw0rd!\") {
                token expiresAt user { username lastLogin } } }",
            json!({}),
        )
        .await;
    let token = data["login"]["token"].as_str().unwrap();
    assert!(token.len() >= 40, "{token}");
    assert_eq!(data["login"]["user"]["username"], "user_4");
    assert!(data["login"]["user"]["lastLogin"].is_string());
    assert!(data["login"]["expiresAt"].is_string());

    let body = app
        .graphql_bearer(token, "{ viewer { username } }", json!({}))
        .await;
    assert_eq!(body["data"]["viewer"]["username"], "user_4");
    // A token outranks a legacy id sent alongside it.
    let response: Value = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .header("x-user-id", "9")
        .json(&json!({"query": "{ viewer { username } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["data"]["viewer"]["username"], "user_4");
}

async fn bad_credentials_are_refused_alike(app: TestApp) {
    let login =
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }";
    let wrong_password = app
        .graphql(login, json!({"u": "user_1", "p": "nope"}))
        .await;
    let unknown_user = app.graphql(login, json!({"u": "ghost", "p": "nope"})).await;
    assert_eq!(error_code(&wrong_password), "UNAUTHENTICATED");
    assert_eq!(error_code(&unknown_user), "UNAUTHENTICATED");
    assert_eq!(
        wrong_password["errors"][0]["message"], unknown_user["errors"][0]["message"],
        "the answer must not reveal which usernames exist"
    );
}

async fn invalid_expired_and_revoked_tokens(app: TestApp) {
    let body = app
        .graphql_bearer("not-a-token", "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");

    let response: Value = app
        .client
        .post(app.url("/graphql"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .json(&json!({"query": "{ viewer { id } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&response), "UNAUTHENTICATED");
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );

    let token = app.login("user_2", SEED_PASSWORD).await;
    let data = app
        .graphql_bearer(&token, "mutation { logout }", json!({}))
        .await;
    assert_eq!(data["data"]["logout"], true);
    let body = app
        .graphql_bearer(&token, "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "revoked");

    let token = app.login("user_3", SEED_PASSWORD).await;
    {
        use sea_orm::ConnectionTrait;
        app.db
            .execute_unprepared("UPDATE auth_tokens SET expires_at = '2000-01-01T00:00:00Z'")
            .await
            .unwrap();
    }
    let body = app
        .graphql_bearer(&token, "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "expired");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

async fn new_users_can_sign_in(app: TestApp) {
    app.ok(
        "mutation { createUser(input: {username: \"neo\", password: \"red pill\"}) { id } }",
        json!({}),
    )
    .await;
    let token = app.login("neo", "red pill").await;
    let body = app
        .graphql_bearer(&token, "{ viewer { username } }", json!({}))
        .await;
    assert_eq!(body["data"]["viewer"]["username"], "neo");
    // A changed password works at once; the old one no longer does.
    let id = app
        .graphql_bearer(&token, "{ viewer { id } }", json!({}))
        .await["data"]["viewer"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = app
        .graphql_bearer(
            &token,
            "mutation($id: ID!) { updateUser(id: $id, input: {password: \"blue pill\"}) { id } }",
            json!({"id": id}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    app.login("neo", "blue pill").await;
    let body = app
        .graphql(
            "mutation { login(username: \"neo\", password: \"red pill\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

crate::scenarios!(
    login_issues_a_working_token,
    bad_credentials_are_refused_alike,
    invalid_expired_and_revoked_tokens,
    new_users_can_sign_in,
);

#[tokio::test]
async fn legacy_identity_can_be_turned_off() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.legacy_identity = false)
        .await
        .unwrap();
    let body = app
        .graphql_as(Some(1), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("legacy identity"),
        "{body}"
    );
    let token = app.login("user_1", SEED_PASSWORD).await;
    let body = app
        .graphql_bearer(&token, "{ viewer { username } }", json!({}))
        .await;
    assert_eq!(body["data"]["viewer"]["username"], "user_1");
}
