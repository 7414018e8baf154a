//! HTTP transport: the router, middleware, and the handlers that are not
//! part of any API (health, readiness). API handlers are thin: they extract
//! input and hand it to the GraphQL schema or the domain.

mod graphiql;
mod graphql;
mod health;
pub mod ws;

use std::time::Duration;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, Request},
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use crate::app::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/graphql",
            get(graphql::graphql_get)
                .post(graphql::graphql_post)
                .fallback(graphql::method_not_allowed),
        )
        .route("/graphql/ws", get(graphql::graphql_ws))
        .route("/graphiql/{file}", get(graphiql::asset))
        .merge(crate::rest::router())
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(CatchPanicLayer::custom(health::panic_response))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// How long a readiness probe waits for a dependency.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
