//! Users over GraphQL: listing, filters, pagination, create, update, delete,
//! validation, authorization, seeding.

use chat_gateway::domain::users::SEED_PASSWORD;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, start};

const USER_FIELDS: &str = "id username firstName lastName email isActive isStaff isSuperuser \
                           lastLogin dateJoined profile { id status statusMsg }";

fn usernames(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["username"].as_str().unwrap().to_owned())
        .collect()
}

async fn create(app: &TestApp, input: Value) -> Value {
    app.ok(
        &format!(
            "mutation($input: CreateUserInput!) {{ createUser(input: $input) {{ {USER_FIELDS} }} }}"
        ),
        json!({"input": input}),
    )
    .await["createUser"]
        .clone()
}

async fn seeded_users_are_listed_in_order(app: TestApp) {
    let data = app
        .ok(
            "{ users { totalCount edges { node { username profile { status statusMsg } } } } }",
            json!({}),
        )
        .await;
    let expected: Vec<String> = (1..=15).map(|n| format!("user_{n}")).collect();
    assert_eq!(usernames(&data["users"]), expected);
    assert_eq!(data["users"]["totalCount"], 15);
    let first = &data["users"]["edges"][0]["node"]["profile"];
    assert_eq!(first["status"], "OFFLINE");
    assert_eq!(first["statusMsg"], Value::Null);
}

async fn seeded_password_is_hashed(app: TestApp) {
    use entity::user;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let row = user::Entity::find()
        .filter(user::Column::Username.eq("user_1"))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(row.password.starts_with("$argon2id$"), "{}", row.password);
    assert!(
        chat_gateway::domain::passwords::verify(SEED_PASSWORD.into(), row.password)
            .await
            .unwrap()
    );
}

async fn create_user_returns_the_user(app: TestApp) {
    let user = create(
        &app,
        json!({
            "username": "ada", "password": "correct horse", "firstName": "Ada",
            "lastName": "Lovelace", "email": "ada@example.org",
            "profile": {"status": "BUSY", "statusMsg": "computing"}
        }),
    )
    .await;
    assert_eq!(user["username"], "ada");
    assert_eq!(user["firstName"], "Ada");
    assert_eq!(user["lastName"], "Lovelace");
    assert_eq!(user["email"], "ada@example.org");
    assert_eq!(user["isActive"], true);
    assert_eq!(user["isStaff"], false);
    assert_eq!(user["lastLogin"], Value::Null);
    assert_eq!(user["profile"]["status"], "BUSY");
    assert_eq!(user["profile"]["statusMsg"], "computing");
    assert!(user["dateJoined"].as_str().unwrap().starts_with("20"));

    let id = user["id"].as_str().unwrap();
    let fetched = app
        .ok(
            &format!("query($id: ID!) {{ user(id: $id) {{ {USER_FIELDS} }} }}"),
            json!({"id": id}),
        )
        .await;
    assert_eq!(fetched["user"], user);
}

async fn create_user_defaults(app: TestApp) {
    let user = create(&app, json!({"username": "bob", "password": "pw"})).await;
    assert_eq!(user["firstName"], "");
    assert_eq!(user["email"], "");
    assert_eq!(user["profile"]["status"], "OFFLINE");
    assert_eq!(user["profile"]["statusMsg"], Value::Null);
}

async fn invalid_user_lists_every_bad_field(app: TestApp) {
    let body = app
        .graphql(
            "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
            json!({"input": {
                "username": "no spaces allowed", "password": "",
                "email": "nope", "lastName": "x".repeat(151),
                "profile": {"statusMsg": "y".repeat(256)}
            }}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let fields = &body["errors"][0]["extensions"]["fields"];
    assert_eq!(
        fields["username"][0],
        "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."
    );
    assert_eq!(fields["password"][0], "This field may not be blank.");
    assert_eq!(fields["email"][0], "Enter a valid email address.");
    assert_eq!(
        fields["last_name"][0],
        "Ensure this field has no more than 150 characters."
    );
    assert_eq!(
        fields["profile.status_msg"][0],
        "Ensure this field has no more than 255 characters."
    );
    // Nothing was stored.
    let data = app.ok("{ users { totalCount } }", json!({})).await;
    assert_eq!(data["users"]["totalCount"], 15);
}

async fn duplicate_username_is_a_clear_error(app: TestApp) {
    let body = app
        .graphql(
            "mutation { createUser(input: {username: \"user_3\", password: \"pw\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(
        body["errors"][0]["extensions"]["fields"]["username"][0],
        "A user with that username already exists."
    );
}

async fn users_filters_match_exactly(app: TestApp) {
    create(
        &app,
        json!({"username": "carol", "password": "pw", "firstName": "Carol", "lastName": "Shaw",
               "profile": {"status": "ONLINE"}}),
    )
    .await;
    create(
        &app,
        json!({"username": "dave", "password": "pw", "firstName": "Carol",
               "profile": {"status": "BUSY"}}),
    )
    .await;
    let query =
        "query($f: UserFilter) { users(filter: $f) { totalCount edges { node { username } } } }";
    let cases = [
        (json!({"username": "user_7"}), vec!["user_7"]),
        (json!({"username": "user_"}), vec![]),
        (json!({"firstName": "Carol"}), vec!["carol", "dave"]),
        (
            json!({"firstName": "Carol", "lastName": "Shaw"}),
            vec!["carol"],
        ),
        (json!({"status": "ONLINE"}), vec!["carol"]),
        (json!({"status": "BUSY"}), vec!["dave"]),
        (json!({"id": "2"}), vec!["user_2"]),
    ];
    for (filter, expected) in cases {
        let data = app.ok(query, json!({"f": filter})).await;
        assert_eq!(usernames(&data["users"]), expected, "filter {filter}");
        assert_eq!(
            data["users"]["totalCount"],
            expected.len(),
            "filter {filter}"
        );
    }
    let data = app.ok(query, json!({"f": {"status": "OFFLINE"}})).await;
    assert_eq!(data["users"]["totalCount"], 15);
}

async fn users_paginate_forwards_and_backwards(app: TestApp) {
    let query = "query($first: Int, $after: String, $last: Int, $before: String) {
        users(first: $first, after: $after, last: $last, before: $before) {
            edges { cursor node { username } }
            pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let data = app.ok(query, json!({"first": 4, "after": after})).await;
        let users = &data["users"];
        seen.extend(usernames(users));
        pages += 1;
        assert_eq!(users["pageInfo"]["hasPreviousPage"], pages > 1);
        if users["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = users["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 4);
    let expected: Vec<String> = (1..=15).map(|n| format!("user_{n}")).collect();
    assert_eq!(seen, expected);

    let data = app.ok(query, json!({"last": 3})).await;
    assert_eq!(usernames(&data["users"]), ["user_13", "user_14", "user_15"]);
    assert_eq!(data["users"]["pageInfo"]["hasPreviousPage"], true);
    let before = data["users"]["pageInfo"]["startCursor"].clone();
    let data = app.ok(query, json!({"last": 2, "before": before})).await;
    assert_eq!(usernames(&data["users"]), ["user_11", "user_12"]);
    assert_eq!(data["users"]["pageInfo"]["hasNextPage"], true);

    // Past the end: an empty page, not an error.
    let end = app.ok(query, json!({"last": 1})).await["users"]["pageInfo"]["endCursor"].clone();
    let data = app.ok(query, json!({"first": 5, "after": end})).await;
    assert_eq!(data["users"]["edges"], json!([]));
    assert_eq!(data["users"]["pageInfo"]["hasNextPage"], false);
}

async fn bad_pagination_arguments_are_refused(app: TestApp) {
    for (args, field) in [
        ("first: -1", "first"),
        ("first: 1000", "first"),
        ("last: 101", "last"),
        ("after: \"garbage\"", "after"),
    ] {
        let body = app
            .graphql(&format!("{{ users({args}) {{ totalCount }} }}"), json!({}))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{args}: {body}");
        assert!(
            body["errors"][0]["extensions"]["fields"][field].is_array(),
            "{args}: {body}"
        );
    }
    let body = app
        .graphql("{ users(first: 1, last: 1) { totalCount } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

async fn unknown_and_malformed_user_ids(app: TestApp) {
    let body = app.graphql("{ user(id: 9999) { id } }", json!({})).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    assert_eq!(body["data"]["user"], Value::Null);
    let body = app.graphql("{ user(id: \"abc\") { id } }", json!({})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

async fn viewer_uses_legacy_identity(app: TestApp) {
    let data = app
        .ok_as(Some(4), "{ viewer { username } }", json!({}))
        .await;
    assert_eq!(data["viewer"]["username"], "user_4");
    let body = app.graphql("{ viewer { username } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    let body = app
        .graphql_as(Some(999), "{ viewer { username } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    let response = app
        .client
        .post(app.url("/graphql?user_id=5"))
        .json(&json!({"query": "{ viewer { username } }"}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["viewer"]["username"], "user_5");
}

const UPDATE: &str = "mutation($id: ID!, $input: UpdateUserInput!) {
    updateUser(id: $id, input: $input) { username firstName profile { status statusMsg } } }";

async fn users_update_only_themselves(app: TestApp) {
    let data = app
        .ok_as(
            Some(2),
            UPDATE,
            json!({"id": "2", "input": {"profile": {"status": "BUSY", "statusMsg": "in a call"}}}),
        )
        .await;
    assert_eq!(data["updateUser"]["username"], "user_2");
    assert_eq!(data["updateUser"]["profile"]["status"], "BUSY");
    assert_eq!(data["updateUser"]["profile"]["statusMsg"], "in a call");

    // A partial update leaves other fields alone; null clears the message.
    let data = app
        .ok_as(
            Some(2),
            UPDATE,
            json!({"id": "2", "input": {"firstName": "Two", "profile": {"statusMsg": null}}}),
        )
        .await;
    assert_eq!(data["updateUser"]["firstName"], "Two");
    assert_eq!(data["updateUser"]["profile"]["status"], "BUSY");
    assert_eq!(data["updateUser"]["profile"]["statusMsg"], Value::Null);

    let body = app
        .graphql_as(
            Some(3),
            UPDATE,
            json!({"id": "2", "input": {"firstName": "x"}}),
        )
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    let body = app
        .graphql(UPDATE, json!({"id": "2", "input": {"firstName": "x"}}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");

    let body = app
        .graphql_as(
            Some(2),
            UPDATE,
            json!({"id": "2", "input": {"username": "user_3"}}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(
        body["errors"][0]["extensions"]["fields"]["username"][0],
        "A user with that username already exists."
    );

    // The rename to a free name works, and the list shows it at once.
    app.ok_as(
        Some(2),
        UPDATE,
        json!({"id": "2", "input": {"username": "second"}}),
    )
    .await;
    let data = app
        .ok(
            "{ users(filter: {id: 2}) { edges { node { username } } } }",
            json!({}),
        )
        .await;
    assert_eq!(usernames(&data["users"]), ["second"]);
}

async fn users_delete_themselves(app: TestApp) {
    let delete = "mutation($id: ID!) { deleteUser(id: $id) }";
    let body = app.graphql_as(Some(5), delete, json!({"id": "6"})).await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    let data = app.ok_as(Some(6), delete, json!({"id": "6"})).await;
    assert_eq!(data["deleteUser"], "6");
    let body = app.graphql("{ user(id: 6) { id } }", json!({})).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let data = app.ok("{ users { totalCount } }", json!({})).await;
    assert_eq!(data["users"]["totalCount"], 14);
    // The deleted user can no longer act.
    let body = app
        .graphql_as(Some(6), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

async fn seeding_survives_restarts_and_races(app: TestApp) {
    // Two more instances on the same database, started at the same moment.
    let (a, b) = tokio::join!(
        start(app.config.clone(), app.backend, None),
        start(app.config.clone(), app.backend, None)
    );
    for instance in [&app, &a, &b] {
        let data = instance.ok("{ users { totalCount } }", json!({})).await;
        assert_eq!(data["users"]["totalCount"], 15);
    }
}

async fn password_is_never_exposed(app: TestApp) {
    let data = app
        .ok("{ __type(name: \"User\") { fields { name } } }", json!({}))
        .await;
    let fields: Vec<&str> = data["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"username"));
    assert!(!fields.iter().any(|f| f.to_lowercase().contains("password")));
}

async fn user_pages_cost_a_fixed_number_of_statements(app: TestApp) {
    let query = "query($n: Int) { users(first: $n) { totalCount edges { node { username profile { status } } } } }";
    let mut costs = Vec::new();
    for n in [1, 15] {
        let before = app.statements.get();
        let data = app.ok(query, json!({"n": n})).await;
        assert_eq!(data["users"]["edges"].as_array().unwrap().len(), n);
        costs.push(app.statements.get() - before);
    }
    assert_eq!(
        costs[0], costs[1],
        "statements for 1 user vs 15 users: {costs:?}"
    );
    // The users' version (the page is kept at it), the page, its
    // profiles and the count.
    assert!(
        costs[0] <= 4,
        "version, page, profiles and count: {costs:?}"
    );
}

mod quiet {
    use super::*;

    crate::scenarios!(config = crate::helpers::quiet; user_pages_cost_a_fixed_number_of_statements);
}

crate::scenarios!(
    seeded_users_are_listed_in_order,
    seeded_password_is_hashed,
    create_user_returns_the_user,
    create_user_defaults,
    invalid_user_lists_every_bad_field,
    duplicate_username_is_a_clear_error,
    users_filters_match_exactly,
    users_paginate_forwards_and_backwards,
    bad_pagination_arguments_are_refused,
    unknown_and_malformed_user_ids,
    viewer_uses_legacy_identity,
    users_update_only_themselves,
    users_delete_themselves,
    seeding_survives_restarts_and_races,
    password_is_never_exposed,
);
