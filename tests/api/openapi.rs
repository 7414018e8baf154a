//! `GET /openapi.json`: the OpenAPI 3 document of the legacy REST API. It
//! lists every path and method of the contract (`legacy-rest.md`), the user
//! object with exactly the contract's fields, and for each operation only
//! statuses the server really answers: every documented operation is called
//! here, and its answer must be one the document lists for it.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

crate::scenarios!(
    the_document_lists_the_contract,
    the_document_lists_only_statuses_the_server_answers,
);

/// Every path and method of the contract, in the form the document lists
/// (each path also answers without its trailing slash).
const CONTRACT: &[(&str, &str)] = &[
    ("get", "/users/"),
    ("post", "/users/"),
    ("get", "/users/{id}/"),
    ("put", "/users/{id}/"),
    ("patch", "/users/{id}/"),
    ("delete", "/users/{id}/"),
    ("get", "/chat/chatroom/"),
    ("post", "/chat/chatroom/"),
    ("get", "/chat/chatroom/{id}/"),
    ("put", "/chat/chatroom/{id}/"),
    ("delete", "/chat/chatroom/{id}/"),
    ("post", "/chat/user/{to_user_id}/"),
    ("post", "/chat/group/{room_id}/"),
    ("get", "/chat/task_state/{task_id}"),
    ("get", "/chat/messages/{room_id}/"),
    ("get", "/chat/messages/unseen/"),
];

/// The user object's fields, in the contract's order.
const USER_FIELDS: &[&str] = &[
    "id",
    "username",
    "first_name",
    "last_name",
    "email",
    "is_active",
    "is_staff",
    "is_superuser",
    "last_login",
    "date_joined",
    "profile",
];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A path template with its parameter names blanked: `/users/{}/`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.expect("the document is JSON")
}

/// Every operation of the document: (method, path shape) -> operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut found = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if HTTP_METHODS.contains(&method.as_str()) {
                found.insert((method.clone(), shape(path)), operation.clone());
            }
        }
    }
    found
}

/// Follow a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("not a local reference: {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling reference: {reference}"));
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Every property name of a schema and of the schemas it contains.
fn property_names(doc: &Value, schema: &Value, names: &mut BTreeSet<String>, depth: usize) {
    assert!(depth < 16, "schema nested too deep");
    let schema = resolve(doc, schema);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            names.insert(name.clone());
            property_names(doc, property, names, depth + 1);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for part in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            property_names(doc, part, names, depth + 1);
        }
    }
    if let Some(items) = schema.get("items") {
        property_names(doc, items, names, depth + 1);
    }
}

fn json_schema_of<'a>(operation: &'a Value, status: &str) -> &'a Value {
    &operation["responses"][status]["content"]["application/json"]["schema"]
}

async fn the_document_lists_the_contract(app: TestApp) {
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(doc["info"]["title"], "chat-gateway legacy REST API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // Exactly the contract's paths and methods.
    let documented: BTreeSet<(String, String)> = operations(&doc).into_keys().collect();
    let contract: BTreeSet<(String, String)> = CONTRACT
        .iter()
        .map(|(method, path)| (method.to_string(), shape(path)))
        .collect();
    assert_eq!(documented, contract, "documented vs contract operations");

    let ops = operations(&doc);
    let op = |method: &str, path: &str| &ops[&(method.to_owned(), shape(path))];
    let mut operation_ids = BTreeSet::new();
    for ((method, path), operation) in &ops {
        let id = operation["operationId"].as_str().expect("operationId");
        assert!(
            operation_ids.insert(id.to_owned()),
            "duplicate operationId {id}"
        );
        let responses = operation["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        assert!(
            responses.contains_key("500"),
            "{method} {path}: no 500 documented"
        );
        // Every path parameter of the template is described.
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        let original = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .find(|p| shape(p) == *path)
            .unwrap();
        let in_template: BTreeSet<&str> = original
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
            .collect();
        assert_eq!(declared, in_template, "{method} {path}: path parameters");
    }

    // Query parameters.
    let query = |operation: &Value| -> BTreeSet<String> {
        operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    };
    let filters: BTreeSet<String> = [
        "id",
        "username",
        "first_name",
        "last_name",
        "profile__status",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(query(op("get", "/users/")), filters);
    for (method, path) in [
        ("get", "/chat/chatroom/"),
        ("get", "/chat/chatroom/{id}/"),
        ("put", "/chat/chatroom/{id}/"),
        ("delete", "/chat/chatroom/{id}/"),
        ("get", "/chat/messages/{room_id}/"),
        ("get", "/chat/messages/unseen/"),
    ] {
        assert!(
            query(op(method, path)).contains("user_id"),
            "{method} {path}: no user_id"
        );
    }

    // Request bodies: JSON (and form-encoded) for every write with a body.
    for (method, path) in [
        ("post", "/users/"),
        ("put", "/users/{id}/"),
        ("patch", "/users/{id}/"),
        ("post", "/chat/chatroom/"),
        ("post", "/chat/user/{to_user_id}/"),
        ("post", "/chat/group/{room_id}/"),
    ] {
        let content = &op(method, path)["requestBody"]["content"];
        assert!(
            content["application/json"]["schema"].is_object(),
            "{method} {path}: no JSON body"
        );
        assert!(
            content["application/x-www-form-urlencoded"]["schema"].is_object(),
            "{method} {path}: no form body"
        );
    }
    let send = resolve(
        &doc,
        &op("post", "/chat/group/{room_id}/")["requestBody"]["content"]["application/json"]["schema"],
    );
    let mut send_fields: Vec<&str> = send["properties"]
        .as_object()
        .expect("send body properties")
        .keys()
        .map(String::as_str)
        .collect();
    send_fields.sort_unstable();
    assert_eq!(send_fields, ["from", "text"]);

    // The user object: exactly the contract's fields, all always present,
    // and no password anywhere in it.
    let user = resolve(&doc, json_schema_of(op("get", "/users/{id}/"), "200"));
    let fields: Vec<&str> = user["properties"]
        .as_object()
        .expect("user properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, USER_FIELDS, "user object fields");
    let mut required: Vec<&str> = user["required"]
        .as_array()
        .expect("required user fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort_unstable();
    let mut expected = USER_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(required, expected, "every user field is always present");
    let mut all_names = BTreeSet::new();
    property_names(&doc, user, &mut all_names, 0);
    assert!(
        !all_names.iter().any(|n| n.contains("password")),
        "a password field in the user object: {all_names:?}"
    );
    let profile: Vec<&str> = resolve(&doc, &user["properties"]["profile"])["properties"]
        .as_object()
        .expect("profile properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(profile, ["id", "user", "status", "status_msg"]);
    // The list is an array of the same object.
    let list = json_schema_of(op("get", "/users/"), "200");
    assert_eq!(list["type"], "array");
    assert_eq!(resolve(&doc, &list["items"]), user);
    for (method, path, status) in [
        ("post", "/users/", "201"),
        ("put", "/users/{id}/", "200"),
        ("patch", "/users/{id}/", "200"),
    ] {
        assert_eq!(
            resolve(&doc, json_schema_of(op(method, path), status)),
            user,
            "{method} {path}"
        );
    }

    // Chat answers use the envelope, errors the error envelope; /users/
    // errors are DRF-style.
    let mut envelope_fields = BTreeSet::new();
    for ((method, path), operation) in &ops {
        if !path.starts_with("/chat/") {
            continue;
        }
        for (status, response) in operation["responses"].as_object().unwrap() {
            let Some(schema) = response["content"]["application/json"].get("schema") else {
                assert_eq!(status, "204", "{method} {path}: {status} without a body");
                continue;
            };
            let schema = resolve(&doc, schema);
            let names: BTreeSet<&str> = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} {status}: not an object"))
                .keys()
                .map(String::as_str)
                .collect();
            if status.starts_with('2') && path.starts_with("/chat/task_state/") {
                // The old service's own shape, without an envelope.
                assert_eq!(names, BTreeSet::from(["state", "result"]), "{path}");
            } else if status.starts_with('2') {
                assert!(
                    names.contains("status") && names.contains("message"),
                    "{method} {path} {status}: not an envelope: {names:?}"
                );
                envelope_fields.extend(names.into_iter().map(str::to_owned));
            } else {
                assert_eq!(
                    names,
                    BTreeSet::from(["status", "msg"]),
                    "{method} {path} {status}: not an error envelope"
                );
            }
        }
    }
    assert!(envelope_fields.contains("data"));
    let not_found = resolve(&doc, json_schema_of(op("get", "/users/{id}/"), "404"));
    assert!(not_found["properties"]["detail"].is_object());
    // A 400 of /users/ may be field errors: `{"<field>": [...]}`.
    let bad = resolve(&doc, json_schema_of(op("post", "/users/"), "400"));
    let variants: Vec<&Value> = ["oneOf", "anyOf"]
        .into_iter()
        .filter_map(|key| bad.get(key).and_then(Value::as_array))
        .flatten()
        .chain(std::iter::once(bad))
        .map(|variant| resolve(&doc, variant))
        .collect();
    assert!(
        variants
            .iter()
            .any(|v| v["type"] == "object" && v["additionalProperties"].is_object()),
        "POST /users/ 400 is not DRF field errors: {bad}"
    );
}

/// One request: the documented operation it exercises, the concrete path,
/// an optional JSON body, and the status this request must get.
struct Call {
    method: &'static str,
    template: &'static str,
    path: String,
    body: Option<Value>,
    expect: u16,
}

fn call(method: &'static str, template: &'static str, path: String, expect: u16) -> Call {
    Call {
        method,
        template,
        path,
        body: None,
        expect,
    }
}

fn call_with(
    method: &'static str,
    template: &'static str,
    path: String,
    body: Value,
    expect: u16,
) -> Call {
    Call {
        body: Some(body),
        ..call(method, template, path, expect)
    }
}

/// Make the call, check its status against the expectation and the
/// document; returns the JSON answer (null when empty).
async fn run(app: &TestApp, ops: &BTreeMap<(String, String), Value>, call: Call) -> Value {
    let operation = ops
        .get(&(call.method.to_owned(), shape(call.template)))
        .unwrap_or_else(|| panic!("{} {} is not documented", call.method, call.template));
    let method = Method::from_bytes(call.method.to_uppercase().as_bytes()).unwrap();
    let mut request = app.client.request(method, app.url(&call.path));
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    let documented: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
    assert!(
        documented.iter().any(|s| **s == status.to_string()),
        "{} {} answered {status}, which the document does not list for {} {} ({documented:?}): {text}",
        call.method,
        call.path,
        call.method,
        call.template,
    );
    assert_eq!(
        status, call.expect,
        "{} {}: unexpected status: {text}",
        call.method, call.path
    );
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("a JSON answer")
    }
}

async fn the_document_lists_only_statuses_the_server_answers(app: TestApp) {
    let doc = document(&app).await;
    let ops = operations(&doc);
    let mut exercised = BTreeSet::new();
    let missing = 999_999;
    let unknown_task = uuid::Uuid::new_v4();

    // Users.
    let mut calls = vec![
        call("get", "/users/", "/users/".into(), 200),
        call("get", "/users/", "/users/?id=x".into(), 400),
        call("get", "/users/", "/users/?profile__status=Busy".into(), 200),
        call_with("post", "/users/", "/users/".into(), json!({}), 400),
        call_with(
            "post",
            "/users/",
            "/users/".into(),
            json!({"username": "openapi_user", "password": "Passw0rd!",
                   "profile": {"status": "Online", "status_msg": 5}}),
            201,
        ),
        call("get", "/users/{id}/", "/users/1/".into(), 200),
        call("get", "/users/{id}/", format!("/users/{missing}/"), 404),
        call_with("put", "/users/{id}/", "/users/2/".into(), json!({}), 400),
        call_with(
            "put",
            "/users/{id}/",
            "/users/2/".into(),
            json!({"username": "user_2", "profile": {"status": "Busy", "status_msg": null}}),
            200,
        ),
        call_with(
            "put",
            "/users/{id}/",
            format!("/users/{missing}/"),
            json!({}),
            404,
        ),
        call_with(
            "patch",
            "/users/{id}/",
            "/users/2/".into(),
            json!({"profile": {"status": "Offline"}}),
            200,
        ),
        call_with(
            "patch",
            "/users/{id}/",
            "/users/2/".into(),
            json!({"email": "not an address"}),
            400,
        ),
        call_with(
            "patch",
            "/users/{id}/",
            format!("/users/{missing}/"),
            json!({}),
            404,
        ),
        call("delete", "/users/{id}/", format!("/users/{missing}/"), 404),
    ];
    let mut created_user = None;
    for c in calls.drain(..) {
        exercised.insert((c.method, c.template));
        let is_create = c.method == "post" && c.expect == 201;
        let answer = run(&app, &ops, c).await;
        if is_create {
            created_user = answer["id"].as_i64();
        }
    }
    let created_user = created_user.expect("the created user's id");
    exercised.insert(("delete", "/users/{id}/"));
    run(
        &app,
        &ops,
        call(
            "delete",
            "/users/{id}/",
            format!("/users/{created_user}/"),
            204,
        ),
    )
    .await;

    // Chat rooms.
    let room = run(
        &app,
        &ops,
        call_with(
            "post",
            "/chat/chatroom/",
            "/chat/chatroom/".into(),
            json!({"room_name": "openapi", "room_member": [{"username": "user_1"}]}),
            200,
        ),
    )
    .await;
    let room = room["data"]["id"].as_i64().expect("the new room's id");
    let calls = vec![
        call_with(
            "post",
            "/chat/chatroom/",
            "/chat/chatroom/".into(),
            json!([]),
            400,
        ),
        call_with(
            "post",
            "/chat/chatroom/",
            "/chat/chatroom/".into(),
            json!({"room_member": []}),
            400,
        ),
        call("get", "/chat/chatroom/", "/chat/chatroom/".into(), 200),
        call(
            "get",
            "/chat/chatroom/",
            "/chat/chatroom/?user_id=1".into(),
            200,
        ),
        call(
            "get",
            "/chat/chatroom/",
            "/chat/chatroom/?user_id=x".into(),
            400,
        ),
        call(
            "get",
            "/chat/chatroom/",
            format!("/chat/chatroom/?user_id={missing}"),
            404,
        ),
        call(
            "get",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/"),
            200,
        ),
        call(
            "get",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/?user_id=1"),
            200,
        ),
        call(
            "get",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/?user_id=3"),
            404,
        ),
        call(
            "get",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/?user_id=0"),
            400,
        ),
        call(
            "get",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{missing}/"),
            404,
        ),
        call(
            "put",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/?user_id=3"),
            200,
        ),
        call(
            "put",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/?user_id=3"),
            400,
        ),
        call(
            "put",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/"),
            400,
        ),
        call(
            "put",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{missing}/?user_id=3"),
            404,
        ),
        call(
            "delete",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/?user_id=3"),
            204,
        ),
        call(
            "delete",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{room}/?user_id=3"),
            400,
        ),
        call(
            "delete",
            "/chat/chatroom/{id}/",
            format!("/chat/chatroom/{missing}/?user_id=3"),
            404,
        ),
    ];
    for c in calls {
        exercised.insert((c.method, c.template));
        run(&app, &ops, c).await;
    }

    // Messages.
    let sent = run(
        &app,
        &ops,
        call_with(
            "post",
            "/chat/group/{room_id}/",
            format!("/chat/group/{room}/"),
            json!({"from": 1, "text": "hi fam"}),
            200,
        ),
    )
    .await;
    let task = sent["data"].as_str().expect("a task id").to_owned();
    let calls = vec![
        call_with(
            "post",
            "/chat/group/{room_id}/",
            format!("/chat/group/{room}/"),
            json!({}),
            400,
        ),
        call_with(
            "post",
            "/chat/group/{room_id}/",
            format!("/chat/group/{room}/"),
            json!({"text": "hi"}),
            400,
        ),
        call_with(
            "post",
            "/chat/group/{room_id}/",
            format!("/chat/group/{room}/"),
            json!({"from": missing, "text": "hi"}),
            404,
        ),
        call_with(
            "post",
            "/chat/user/{to_user_id}/",
            "/chat/user/2/".into(),
            json!({"from": 1, "text": "hey man"}),
            200,
        ),
        call_with(
            "post",
            "/chat/user/{to_user_id}/",
            "/chat/user/2/".into(),
            json!([]),
            400,
        ),
        call_with(
            "post",
            "/chat/user/{to_user_id}/",
            "/chat/user/2/".into(),
            json!({"from": missing, "text": "hey"}),
            404,
        ),
        call(
            "get",
            "/chat/task_state/{task_id}",
            format!("/chat/task_state/{task}"),
            200,
        ),
        call(
            "get",
            "/chat/task_state/{task_id}",
            format!("/chat/task_state/{unknown_task}"),
            404,
        ),
        call(
            "get",
            "/chat/messages/{room_id}/",
            format!("/chat/messages/{room}/?user_id=1"),
            200,
        ),
        call(
            "get",
            "/chat/messages/{room_id}/",
            format!("/chat/messages/{room}/"),
            400,
        ),
        call(
            "get",
            "/chat/messages/{room_id}/",
            format!("/chat/messages/{room}/?user_id=3"),
            404,
        ),
        call(
            "get",
            "/chat/messages/{room_id}/",
            format!("/chat/messages/{missing}/?user_id=1"),
            404,
        ),
        call(
            "get",
            "/chat/messages/unseen/",
            "/chat/messages/unseen/?user_id=2".into(),
            200,
        ),
        call(
            "get",
            "/chat/messages/unseen/",
            "/chat/messages/unseen/".into(),
            400,
        ),
        call(
            "get",
            "/chat/messages/unseen/",
            format!("/chat/messages/unseen/?user_id={missing}"),
            404,
        ),
    ];
    for c in calls {
        exercised.insert((c.method, c.template));
        run(&app, &ops, c).await;
    }
    exercised.insert(("post", "/chat/chatroom/"));
    exercised.insert(("post", "/chat/group/{room_id}/"));

    // Every documented operation was called.
    let called: BTreeSet<(String, String)> = exercised
        .into_iter()
        .map(|(method, path)| (method.to_owned(), shape(path)))
        .collect();
    let documented: BTreeSet<(String, String)> = ops.into_keys().collect();
    assert_eq!(called, documented, "operations called vs documented");
}
