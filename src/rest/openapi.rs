//! The OpenAPI 3 document of the legacy REST API, generated from the
//! handlers' annotations and the shapes' types, served at `GET /openapi.json`.
//!
//! Request bodies are parsed by hand (JSON or form, see `body.rs`), so they
//! are described by the documentation-only request types below; the answer
//! envelopes and error bodies are built with `json!` in `reply.rs`, so they
//! have documentation-only types here too. None of these types is used at
//! run time: the handlers' behaviour is not derived from them.

#![allow(dead_code)]

use std::{collections::BTreeMap, sync::LazyLock};

use axum::{body::Bytes, http::StatusCode, response::Response};
use serde::Serialize;
use utoipa::{
    OpenApi, ToSchema,
    openapi::{
        ArrayBuilder, ObjectBuilder, RefOr, Schema, Type,
        schema::{AnyOfBuilder, SchemaType},
    },
};

use super::{
    reply::{ChatError, json_bytes},
    shapes::{LegacyRoom, RoomSummary, RoomWithMessages, TaskMessage},
};
use crate::error::AppError;

/// The document: every legacy path (each also answers without its trailing
/// slash), its parameters, bodies and answers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat-gateway legacy REST API",
        version = env!("CARGO_PKG_VERSION"),
        description = DESCRIPTION,
    ),
    paths(
        super::users::list,
        super::users::create,
        super::users::get,
        super::users::replace,
        super::users::patch,
        super::users::delete,
        super::rooms::list,
        super::rooms::create,
        super::rooms::get,
        super::rooms::join,
        super::rooms::leave,
        super::messages::send_direct,
        super::messages::send_group,
        super::messages::task_state,
        super::messages::room_history,
        super::messages::unseen,
    ),
    components(schemas(LegacyRoom, RoomSummary)),
    modifiers(&BearerScheme),
    security((), ("bearer" = [])),
    tags(
        (name = "users", description = "Users and their profiles. Plain JSON answers (no envelope); DRF-style errors."),
        (name = "chat rooms", description = "Group and direct rooms, joining and leaving. Chat envelope."),
        (name = "messages", description = "Asynchronous sends, task state, room history and unseen messages. Chat envelope."),
    )
)]
pub struct LegacyApi;

const DESCRIPTION: &str = "The REST API of the older Django chat service, kept compatible.

- Every path also answers without its trailing slash (`/users` and `/users/`); only one form is listed.
- Identity: the acting user is `?user_id=N` (or `from` in a message body). A `user_id` that is not a \
positive integer is a 400, an unknown user a 404. When the server runs with `--legacy-identity=false`, \
a bearer token (`Authorization: Bearer ...`) of that same user is also required: 401 without one, \
403 for another user.
- Request bodies are JSON objects, or form-encoded fields (`application/x-www-form-urlencoded`): form \
values are strings, a repeated field becomes a list and `profile.status=Busy` fills the nested \
`profile` object.
- `/chat/...` answers are wrapped in an envelope: `{\"status\": 200, \"message\": \"HTTP_200_OK\", \
\"data\": ...}`, errors `{\"status\": <code>, \"msg\": \"<reason>\"}` with the same HTTP status. \
`/users/...` answers are plain objects or arrays, errors `{\"<field>\": [\"<reason>\"]}` or \
`{\"detail\": \"...\"}`.
- A method a path does not list is a 405 (`{\"detail\": ...}` under `/users/`, the error envelope \
under `/chat/`).";

static DOCUMENT: LazyLock<Result<Bytes, String>> = LazyLock::new(|| {
    LegacyApi::openapi()
        .to_json()
        .map(Bytes::from)
        .map_err(|e| e.to_string())
});

/// `GET /openapi.json`: the document above.
pub async fn serve() -> Response {
    match &*DOCUMENT {
        Ok(bytes) => json_bytes(StatusCode::OK, bytes.clone()),
        Err(e) => axum::response::IntoResponse::into_response(ChatError::from(AppError::internal(
            anyhow::anyhow!("OpenAPI document: {e}"),
        ))),
    }
}

// ---------------------------------------------------------------------------
// Shared pieces.

/// Text without the NUL character, which no input may hold.
pub const NO_NUL: &str = r"^[^\u0000]*$";

/// A profile status.
#[derive(Serialize, ToSchema)]
pub enum ProfileStatus {
    Online,
    Busy,
    Offline,
}

/// The `/chat/...` error envelope; the HTTP status is the same as `status`.
#[derive(Serialize, ToSchema)]
pub struct ChatErrorEnvelope {
    #[schema(example = 400)]
    pub status: u16,
    /// A human readable reason, never internal details.
    #[schema(example = "Body is empty or wrong format")]
    pub msg: String,
}

/// The `/chat/...` success envelope without data (join).
#[derive(Serialize, ToSchema)]
pub struct ChatOk {
    #[schema(example = 200)]
    pub status: u16,
    #[schema(example = "HTTP_200_OK")]
    pub message: String,
}

/// A `/chat/...` success envelope around some `data`.
macro_rules! chat_envelope {
    ($(#[$meta:meta])* $name:ident { $(#[$data_meta:meta])* data: $data:ty }) => {
        $(#[$meta])*
        #[derive(Serialize, ToSchema)]
        pub struct $name {
            #[schema(example = 200)]
            pub status: u16,
            #[schema(example = "HTTP_200_OK")]
            pub message: String,
            $(#[$data_meta])*
            pub data: $data,
        }
    };
}

/// `{"detail": "..."}`, as DRF answers `/users/...` errors that are not
/// about fields (`Not found.`, a JSON parse error, permissions).
#[derive(Serialize, ToSchema)]
pub struct Detail {
    #[schema(example = "Not found.")]
    pub detail: String,
}

/// The errors of one field: its messages, or for a nested object
/// (`profile`) the messages of each of its fields.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum FieldError {
    Messages(Vec<String>),
    Nested(BTreeMap<String, Vec<String>>),
}

/// DRF-style field errors, every bad field at once. Body-level problems
/// (not an object) are under `non_field_errors`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "username": ["A user with that username already exists."],
    "profile": {"status": ["\"Away\" is not a valid choice."]}
}))]
pub struct UserFieldErrors(pub BTreeMap<String, FieldError>);

/// A `/users/...` 400: field errors, or `{"detail": "JSON parse error - ..."}`
/// for a body that is not JSON.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsersBadRequest {
    Fields(UserFieldErrors),
    Detail(Detail),
}

/// A `/users/...` 500: `{"detail": "Internal server error"}` from the
/// handlers; the error envelope when a handler panics.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsersServerError {
    Detail(Detail),
    Envelope(ChatErrorEnvelope),
}

/// `anyOf` of arrays of the given schemas (they overlap, so not `oneOf`).
fn any_of_arrays(items: [RefOr<Schema>; 2]) -> Schema {
    let [a, b] = items;
    AnyOfBuilder::new()
        .item(ArrayBuilder::new().items(a))
        .item(ArrayBuilder::new().items(b))
        .into()
}

fn any_of(items: [RefOr<Schema>; 2]) -> Schema {
    let [a, b] = items;
    AnyOfBuilder::new().item(a).item(b).into()
}

fn room_ref() -> RefOr<Schema> {
    utoipa::openapi::Ref::from_schema_name(LegacyRoom::name()).into()
}

fn summary_ref() -> RefOr<Schema> {
    utoipa::openapi::Ref::from_schema_name(RoomSummary::name()).into()
}

/// Group rooms without members, or (with `user_id`) the user's rooms with
/// their members.
fn room_list_data() -> Schema {
    any_of_arrays([summary_ref(), room_ref()])
}

/// A group room without members, or (with `user_id`) the room with its
/// members.
fn room_or_summary_data() -> Schema {
    any_of([summary_ref(), room_ref()])
}

// ---------------------------------------------------------------------------
// Users.

/// The `profile` object of a user body.
#[derive(Serialize, ToSchema)]
pub struct ProfileRequest {
    /// `Offline` when a new user's profile does not say.
    pub status: Option<ProfileStatus>,
    #[schema(schema_with = status_msg_input)]
    pub status_msg: Option<String>,
}

/// `status_msg` as sent: text, a number (stored as its text) or null.
fn status_msg_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![
            Type::String,
            Type::Number,
            Type::Null,
        ]))
        .max_length(Some(255))
        .pattern(Some(NO_NUL))
        .description(Some(
            "At most 255 characters, or null. A number is accepted and stored as its text \
             (`5` -> `\"5\"`).",
        ))
        .into()
}

/// `POST /users/`. Text fields also take numbers (stored as their text).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "username": "alice", "password": "Passw0rd!", "first_name": "Alice", "last_name": "",
    "email": "alice@example.com", "profile": {"status": "Online", "status_msg": "hello"}
}))]
pub struct CreateUserRequest {
    /// Unique; letters, digits and `@.+-_`.
    #[schema(min_length = 1, max_length = 150, pattern = r"^[\w.@+-]+$")]
    pub username: String,
    /// Stored hashed; never shown.
    #[schema(min_length = 1, max_length = 4096, format = Password, pattern = r"^[^\u0000]*$")]
    pub password: String,
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    pub first_name: Option<String>,
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    pub last_name: Option<String>,
    /// A valid address, or empty.
    #[schema(max_length = 254, pattern = r"^[^\u0000]*$")]
    pub email: Option<String>,
    pub profile: ProfileRequest,
}

/// `PUT /users/<id>/`: the same rules as creating, `password` optional.
#[derive(Serialize, ToSchema)]
pub struct ReplaceUserRequest {
    /// Unique; letters, digits and `@.+-_`.
    #[schema(min_length = 1, max_length = 150, pattern = r"^[\w.@+-]+$")]
    pub username: String,
    /// Stored hashed; unchanged when absent.
    #[schema(min_length = 1, max_length = 4096, format = Password, pattern = r"^[^\u0000]*$")]
    pub password: Option<String>,
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    pub first_name: Option<String>,
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    pub last_name: Option<String>,
    /// A valid address, or empty.
    #[schema(max_length = 254, pattern = r"^[^\u0000]*$")]
    pub email: Option<String>,
    pub profile: ProfileRequest,
}

/// `PATCH /users/<id>/`: any subset of the fields, `profile.status` alone
/// included.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"profile": {"status": "Busy"}}))]
pub struct PatchUserRequest {
    #[schema(min_length = 1, max_length = 150, pattern = r"^[\w.@+-]+$")]
    pub username: Option<String>,
    #[schema(min_length = 1, max_length = 4096, format = Password, pattern = r"^[^\u0000]*$")]
    pub password: Option<String>,
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    pub first_name: Option<String>,
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    pub last_name: Option<String>,
    #[schema(max_length = 254, pattern = r"^[^\u0000]*$")]
    pub email: Option<String>,
    pub profile: Option<ProfileRequest>,
}

/// A user body as form fields: the profile's fields are named
/// `profile.status` and `profile.status_msg` (`profile[status]` works too),
/// and every value is text. `required` lists the fields that must be there;
/// with `profile` set, one of the profile's fields must be there as well.
fn user_form(description: &str, required: &[&str], profile: bool) -> Schema {
    let text = |min: Option<usize>, max: usize| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(min)
            .max_length(Some(max))
            .pattern(Some(NO_NUL))
    };
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .property("username", text(Some(1), 150).pattern(Some(r"^[\w.@+-]+$")))
        .property("password", text(Some(1), 4096))
        .property("first_name", text(None, 150))
        .property("last_name", text(None, 150))
        .property("email", text(None, 254))
        .property(
            "profile.status",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["Online", "Busy", "Offline"])),
        )
        .property("profile.status_msg", text(None, 255));
    for field in required {
        object = object.required(*field);
    }
    if !profile {
        return object.into();
    }
    let with = |field: &str| ObjectBuilder::new().required(field);
    utoipa::openapi::AllOfBuilder::new()
        .item(object)
        .item(
            AnyOfBuilder::new()
                .item(with("profile.status"))
                .item(with("profile.status_msg")),
        )
        .into()
}

/// A schema built by a function, under a name of its own.
macro_rules! built_schema {
    ($(#[$meta:meta])* $name:ident => $build:expr) => {
        $(#[$meta])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build.into()
            }
        }

        impl ToSchema for $name {}
    };
}

built_schema! {
    /// `POST /users/` as form fields.
    CreateUserForm => user_form(
        "`POST /users/` as form fields; `profile.status` / `profile.status_msg` fill the profile.",
        &["username", "password"],
        true,
    )
}

built_schema! {
    /// `PUT /users/<id>/` as form fields.
    ReplaceUserForm => user_form(
        "`PUT /users/<id>/` as form fields; `profile.status` / `profile.status_msg` fill the \
         profile.",
        &["username"],
        true,
    )
}

built_schema! {
    /// `PATCH /users/<id>/` as form fields.
    PatchUserForm => user_form(
        "`PATCH /users/<id>/` as form fields: any subset.",
        &[],
        false,
    )
}

/// The bearer token scheme (`login` issues tokens). While legacy identity
/// is on it is optional; with `--legacy-identity=false` the paths that act
/// as a user need it.
pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from the GraphQL `login` mutation. Optional while legacy \
                         identity is on; required by the paths that act as a user when the \
                         server runs with `--legacy-identity=false`.",
                    ))
                    .build(),
            ),
        );
    }
}

// ---------------------------------------------------------------------------
// Chat rooms.

/// A member to add, by username. Unknown usernames are ignored.
#[derive(Serialize, ToSchema)]
pub struct RoomMemberRequest {
    #[schema(example = "user_7")]
    pub username: String,
}

/// `POST /chat/chatroom/`. `room_member` may also be a single object, or
/// plain usernames.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"room_name": "family", "room_member": [{"username": "user_7"}]}))]
pub struct CreateRoomRequest {
    /// Unique among rooms; not blank, at most 255 characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub room_name: String,
    pub room_member: Option<Vec<RoomMemberRequest>>,
}

built_schema! {
    /// `POST /chat/chatroom/` as form fields: `room_member` repeated, one
    /// username each.
    CreateRoomForm => ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "`POST /chat/chatroom/` as form fields: `room_member` names a username, and may be \
             repeated.",
        ))
        .property(
            "room_name",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some(r"^[^\u0000]*[^\s\u0000][^\u0000]*$")),
        )
        .property(
            "room_member",
            ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)),
        )
        .required("room_name")
}

chat_envelope! {
    /// Group rooms (`id`, `room_name`), or with `user_id` every room of the
    /// user, with members.
    RoomListEnvelope {
        #[schema(schema_with = room_list_data)]
        data: ()
    }
}

chat_envelope! {
    /// A room with its members.
    RoomEnvelope { data: LegacyRoom }
}

chat_envelope! {
    /// A group room (`id`, `room_name`), or with `user_id` the room with its
    /// members.
    RoomOrSummaryEnvelope {
        #[schema(schema_with = room_or_summary_data)]
        data: ()
    }
}

// ---------------------------------------------------------------------------
// Messages.

/// `POST /chat/user/<id>/` and `POST /chat/group/<id>/`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"from": 2, "text": "hey man"}))]
pub struct SendRequest {
    /// The sender: a positive integer naming an existing user.
    #[schema(minimum = 1)]
    pub from: i64,
    /// 1 to 1024 characters; out of bounds is a 400 at once (no task).
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\u0000]*$")]
    pub text: String,
}

chat_envelope! {
    /// The id of the task that sends the message.
    TaskIdEnvelope {
        #[schema(format = "uuid", example = "01936f2e-8b8c-7a3e-9d1e-2f4b5c6d7e8f")]
        data: String
    }
}

/// A task's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskStateName {
    Pending,
    Started,
    Success,
    Failure,
}

/// Why a task failed; `exc_type` names the kind of failure.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"exc_type": "PermissionDenied", "exc_message": ["User doesn't belong to chatroom"]}))]
pub struct TaskFailure {
    #[schema(example = "PermissionDenied")]
    pub exc_type: String,
    pub exc_message: Vec<String>,
}

/// A task's result: the stored message on SUCCESS, the failure on FAILURE.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TaskResult {
    Message(TaskMessage),
    Failure(TaskFailure),
}

/// `GET /chat/task_state/<task_id>`: exactly the state and the result, as
/// the old service answered (no envelope).
#[derive(Serialize, ToSchema)]
pub struct TaskStateAnswer {
    pub state: TaskStateName,
    /// Null while PENDING or STARTED.
    #[schema(required = true)]
    pub result: Option<TaskResult>,
}

chat_envelope! {
    /// A room, its members and all its messages, oldest first.
    RoomHistoryEnvelope { data: RoomWithMessages }
}

chat_envelope! {
    /// One entry per room of the user, each with the messages the user has
    /// not seen (not sent by them), oldest first.
    UnseenEnvelope { data: Vec<RoomWithMessages> }
}
