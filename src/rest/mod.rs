//! The legacy REST API of the old Django service, kept byte-compatible.
//!
//! Every handler is a thin adapter: it reads the legacy request (query
//! string, JSON or form body), calls the same domain services and job
//! submission the GraphQL API uses, and renders the legacy JSON shapes and
//! status codes. No business rule lives here. Every path works with and
//! without its trailing slash.

mod body;
mod identity;
mod inputs;
mod messages;
mod openapi;
mod reply;
mod rooms;
mod shapes;
mod users;

use axum::{
    Router,
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use serde_json::json;

use crate::app::AppState;
use reply::ChatError;

async fn users_method_not_allowed(method: Method) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({"detail": format!("Method \"{method}\" not allowed.")})),
    )
        .into_response()
}

async fn chat_method_not_allowed(method: Method) -> Response {
    ChatError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method \"{method}\" not allowed."),
    )
    .into_response()
}

/// Mount `route` at `path` and at `path/`.
fn both(router: Router<AppState>, path: &str, route: MethodRouter<AppState>) -> Router<AppState> {
    router
        .route(path, route.clone())
        .route(&format!("{path}/"), route)
}

pub use inputs::CheckQueryLayer;

/// The legacy routes. Each must be wrapped in [`CheckQueryLayer`].
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    router = router.route("/openapi.json", get(openapi::serve));
    router = both(
        router,
        "/users",
        get(users::list)
            .post(users::create)
            .fallback(users_method_not_allowed),
    );
    router = both(
        router,
        "/users/{id}",
        get(users::get)
            .put(users::replace)
            .patch(users::patch)
            .delete(users::delete)
            .fallback(users_method_not_allowed),
    );
    router = both(
        router,
        "/chat/chatroom",
        get(rooms::list)
            .post(rooms::create)
            .fallback(chat_method_not_allowed),
    );
    router = both(
        router,
        "/chat/chatroom/{id}",
        get(rooms::get)
            .put(rooms::join)
            .delete(rooms::leave)
            .fallback(chat_method_not_allowed),
    );
    router = both(
        router,
        "/chat/user/{id}",
        post(messages::send_direct).fallback(chat_method_not_allowed),
    );
    router = both(
        router,
        "/chat/group/{id}",
        post(messages::send_group).fallback(chat_method_not_allowed),
    );
    router = both(
        router,
        "/chat/task_state/{id}",
        get(messages::task_state).fallback(chat_method_not_allowed),
    );
    router = both(
        router,
        "/chat/messages/unseen",
        get(messages::unseen).fallback(chat_method_not_allowed),
    );
    both(
        router,
        "/chat/messages/{id}",
        get(messages::room_history).fallback(chat_method_not_allowed),
    )
}
