//! `/graphql` over HTTP: POST and GET queries, GraphiQL for browsers.

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    extract::{FromRequest, Request, State},
    http::{HeaderMap, Uri, header},
    response::{Html, IntoResponse, Response},
};

use crate::{app::AppState, identity::Identity};

/// The identity the request names, from its headers and query string.
fn identity(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Identity {
    let header = headers.get("x-user-id").and_then(|v| v.to_str().ok());
    let query = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "user_id")
            .map(|(_, v)| v.into_owned())
    });
    Identity::from_legacy(header, query.as_deref(), state.config.legacy_identity)
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

async fn execute(state: &AppState, identity: Identity, request: GraphQLRequest) -> Response {
    let request = request.into_inner().data(identity);
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
}

pub async fn graphql_post(State(state): State<AppState>, request: Request) -> Response {
    let identity = identity(&state, request.headers(), request.uri());
    match GraphQLRequest::<async_graphql_axum::rejection::GraphQLRejection>::from_request(
        request, &state,
    )
    .await
    {
        Ok(request) => execute(&state, identity, request).await,
        Err(rejection) => rejection.into_response(),
    }
}

pub async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    let has_query = request
        .uri()
        .query()
        .is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "query"));
    if !has_query && wants_html(request.headers()) {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .finish(),
        )
        .into_response();
    }
    graphql_post(State(state), request).await
}
