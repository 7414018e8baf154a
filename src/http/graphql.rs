//! `/graphql` over HTTP, following the GraphQL-over-HTTP specification.
//!
//! - `POST` takes `application/json` bodies (a request or a batch array);
//!   any other content type is refused with 415.
//! - `GET` takes `query`, `variables`, `operationName` in the query string,
//!   for queries only: a mutation over GET is refused with 405.
//! - The response type follows `Accept`: `application/graphql-response+json`
//!   when the client prefers it (a request that cannot execute is then a 400
//!   without `data`), `application/json` otherwise (always 200 once the body
//!   parsed).
//! - A browser `GET` without a query gets GraphiQL.

use async_graphql::{BatchRequest, Response as GqlResponse, parser::types::OperationType};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use axum::extract::{FromRequestParts, Request, ws::WebSocketUpgrade};

use std::sync::Arc;

use super::{ClientIp, graphiql, server::ClientAddr, ws};
use crate::{app::AppState, graphql, identity::Identity};

const JSON: &str = "application/json";
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// Most operations one batched request may carry.
const MAX_BATCH: usize = 20;

/// The media type a response is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Json,
    GraphQLResponseJson,
}

impl MediaType {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            MediaType::Json => "application/json; charset=utf-8",
            MediaType::GraphQLResponseJson => "application/graphql-response+json; charset=utf-8",
        })
    }
}

/// Pick the response media type from `Accept`: the supported type with the
/// highest quality, the first listed on a tie; JSON when nothing matches.
pub fn negotiate(headers: &HeaderMap) -> MediaType {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return MediaType::Json;
    };
    let mut best: Option<(f32, MediaType)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let candidate = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => MediaType::GraphQLResponseJson,
            JSON | "application/*" | "*/*" => MediaType::Json,
            _ => continue,
        };
        if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, candidate));
        }
    }
    best.map(|(_, media)| media).unwrap_or(MediaType::Json)
}

/// The identity the request names, from its headers and query string.
fn identity(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Identity {
    let header_value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let query = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "user_id")
            .map(|(_, v)| v.into_owned())
    });
    Identity::from_parts(
        header_value("authorization"),
        header_value("x-user-id"),
        query.as_deref(),
        state.config.legacy_identity,
    )
}

/// A response for a request that never reached execution.
fn request_error(status: StatusCode, media: MediaType, message: &str) -> Response {
    let body = json!({"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]});
    (
        status,
        [(header::CONTENT_TYPE, media.header())],
        body.to_string(),
    )
        .into_response()
}

/// A response whose errors all come before execution (parse, validation,
/// variables, limits) has no data and no error with a path.
fn is_request_error(response: &GqlResponse) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The status and body of one response. A request that never ran has no
/// `data` entry; it is a 400 when a limit or a bad input refused it, and
/// also for any request error under `application/graphql-response+json`.
fn single_body(
    gateway: &graphql::Gateway,
    executed: &graphql::Executed,
    media: MediaType,
) -> (StatusCode, Vec<u8>) {
    let response = &executed.response;
    if is_request_error(response) {
        let body = serde_json::to_vec(&json!({"errors": response.errors}))
            .unwrap_or_else(|_| b"{}".to_vec());
        let status = if executed.refused || media == MediaType::GraphQLResponseJson {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        return (status, body);
    }
    let status = if rate_limited(response).is_some() {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    (status, gateway.to_json(response))
}

/// The seconds to wait, when an error of the response is a rate limit.
fn rate_limited(response: &GqlResponse) -> Option<u64> {
    response.errors.iter().find_map(|error| {
        let extensions = error.extensions.as_ref()?;
        match (extensions.get("code"), extensions.get("retryAfter")) {
            (Some(async_graphql::Value::String(code)), retry) if code == "RATE_LIMITED" => {
                Some(match retry {
                    Some(async_graphql::Value::Number(n)) => n.as_u64().unwrap_or(1),
                    _ => 1,
                })
            }
            _ => None,
        }
    })
}

fn respond(
    state: &AppState,
    batch: Vec<graphql::Executed>,
    single: bool,
    media: MediaType,
) -> Response {
    let gateway = &state.graphql;
    let (status, body) = if single {
        single_body(gateway, &batch[0], media)
    } else {
        let mut body = Vec::with_capacity(64 * batch.len());
        body.push(b'[');
        for (index, executed) in batch.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            body.extend(single_body(gateway, executed, media).1);
        }
        body.push(b']');
        (StatusCode::OK, body)
    };
    let mut response = (status, [(header::CONTENT_TYPE, media.header())], body).into_response();
    if single {
        for (name, value) in batch[0].response.http_headers.iter() {
            response.headers_mut().append(name, value.clone());
        }
    }
    if let Some(seconds) = batch.iter().find_map(|e| rate_limited(&e.response)) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

async fn execute(
    state: &AppState,
    identity: Identity,
    client: ClientIp,
    batch: BatchRequest,
    media: MediaType,
) -> Response {
    match batch {
        BatchRequest::Single(request) => {
            let executed = state.graphql.execute(request, identity, client).await;
            respond(state, vec![executed], true, media)
        }
        BatchRequest::Batch(requests) => {
            if requests.len() > MAX_BATCH {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    media,
                    &format!("A batch may hold at most {MAX_BATCH} operations"),
                );
            }
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses.push(
                    state
                        .graphql
                        .execute(request, identity.clone(), client)
                        .await,
                );
            }
            respond(state, responses, false, media)
        }
    }
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == JSON || v == GRAPHQL_RESPONSE_JSON || v.ends_with("+json"))
}

pub async fn graphql_post(
    State(state): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let media = negotiate(&headers);
    if !is_json_content_type(&headers) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "GraphQL requests must be sent as `Content-Type: application/json`",
        );
    }
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                &format!("The body is not a GraphQL request: {e}"),
            );
        }
    };
    // A request without a document has invalid parameters: a 400 whatever
    // the media type (GraphQL over HTTP; an empty document is a parse error).
    if let BatchRequest::Single(request) = &batch
        && request.query.trim().is_empty()
        && request.extensions.is_empty()
    {
        return request_error(
            StatusCode::BAD_REQUEST,
            media,
            "The request has no `query` (a GraphQL document)",
        );
    }
    let identity = identity(&state, &headers, &uri);
    execute(&state, identity, client, batch, media).await
}

/// A GraphQL request from a GET query string (`query`, `operationName`,
/// `variables` and `extensions` as JSON text).
fn parse_get(query_string: &str) -> Result<async_graphql::Request, String> {
    let mut query = None;
    let mut operation_name = None;
    let mut variables = None;
    let mut extensions = None;
    let pairs = crate::input::decode_form(query_string.as_bytes())
        .map_err(|e| format!("the `{}` parameter is not valid UTF-8", e.field))?;
    for (key, value) in pairs {
        match key.as_str() {
            "query" => query = Some(value),
            "operationName" | "operation_name" => operation_name = Some(value),
            "variables" => variables = Some(value),
            "extensions" => extensions = Some(value),
            _ => {}
        }
    }
    let query = query.ok_or("the `query` parameter is missing")?;
    let mut request = async_graphql::Request::new(query);
    if let Some(name) = operation_name.filter(|n| !n.is_empty()) {
        request = request.operation_name(name);
    }
    if let Some(text) = variables.filter(|v| !v.is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("`variables` is not JSON: {e}"))?;
        request = request.variables(async_graphql::Variables::from_json(value));
    }
    if let Some(text) = extensions.filter(|v| !v.is_empty()) {
        request.extensions = serde_json::from_str(&text)
            .map_err(|e| format!("`extensions` is not a JSON object: {e}"))?;
    }
    Ok(request)
}

/// The type of the operation the request would run, when it is not a query.
fn non_query(request: &async_graphql::Request) -> Option<OperationType> {
    // A document too large to look at is the admission limits' to refuse.
    crate::graphql::limits::tokens::scan(&request.query, 10_000, 64).ok()?;
    let document = async_graphql::parser::parse_query(&request.query).ok()?;
    let operation = match &request.operation_name {
        Some(name) => document
            .operations
            .iter()
            .find(|(op_name, _)| op_name.map(|n| n.as_str()) == Some(name.as_str()))
            .map(|(_, op)| op),
        None => document.operations.iter().next().map(|(_, op)| op),
    };
    operation
        .map(|op| op.node.ty)
        .filter(|ty| *ty != OperationType::Query)
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET /graphql/ws`: websocket only.
pub async fn graphql_ws(State(state): State<AppState>, request: Request) -> Response {
    upgrade(state, request).await
}

async fn upgrade(state: AppState, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let offered = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    if !ws::offers_known_protocol(offered) {
        return request_error(
            StatusCode::BAD_REQUEST,
            MediaType::Json,
            &format!(
                "Offer the `{}` or `{}` websocket subprotocol (Sec-WebSocket-Protocol)",
                ws::TRANSPORT_WS,
                ws::LEGACY_WS
            ),
        );
    }
    let identity = identity(&state, &parts.headers, &parts.uri);
    let client_ip = ClientIp::of(&parts, state.config.trust_forwarded_for);
    match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => {
            // Small buffers: tungstenite's defaults (128 KiB each way) would
            // cost ~256 KiB per idle subscription; messages here are small
            // and the buffers grow when one is not.
            let upgrade = upgrade
                .protocols([ws::TRANSPORT_WS, ws::LEGACY_WS])
                .read_buffer_size(1024)
                .write_buffer_size(0)
                .max_message_size(state.config.body_limit_bytes)
                .max_frame_size(state.config.body_limit_bytes);
            let protocol =
                ws::Protocol::from_name(upgrade.selected_protocol().and_then(|p| p.to_str().ok()));
            let client = parts.extensions.get::<Arc<ClientAddr>>().cloned();
            upgrade.on_upgrade(move |socket| {
                if let Some(client) = client {
                    client.mark_upgraded();
                }
                ws::serve(socket, state, protocol, identity, client_ip)
            })
        }
        Err(rejection) => rejection.into_response(),
    }
}

pub async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    if is_websocket_upgrade(request.headers()) {
        return upgrade(state, request).await;
    }
    let headers = request.headers().clone();
    let uri = request.uri().clone();
    let client = ClientIp::from_parts(
        request.headers(),
        request.extensions(),
        state.config.trust_forwarded_for,
    );
    let query_string = uri.query().unwrap_or("");
    // A browser gets GraphiQL; a `?query=` link opens with it in the editor.
    if graphiql::wants_html(&headers) {
        return graphiql::page();
    }
    let media = negotiate(&headers);
    let request = match parse_get(query_string) {
        Ok(request) => request,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                &format!("Invalid GraphQL GET request: {e}"),
            );
        }
    };
    if let Some(kind) = non_query(&request) {
        let message = match kind {
            OperationType::Subscription => {
                "Subscriptions run over a websocket on /graphql (graphql-transport-ws or \
                 graphql-ws), not over GET"
            }
            _ => "Only queries may be sent with GET; send mutations with POST",
        };
        let mut response = request_error(StatusCode::METHOD_NOT_ALLOWED, media, message);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    }
    let identity = identity(&state, &headers, &uri);
    execute(
        &state,
        identity,
        client,
        BatchRequest::Single(request),
        media,
    )
    .await
}

/// `/graphql` with a method other than GET or POST.
pub async fn method_not_allowed(method: Method) -> Response {
    let mut response = request_error(
        StatusCode::METHOD_NOT_ALLOWED,
        MediaType::Json,
        &format!("{method} is not supported on /graphql; use GET or POST"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(&HeaderMap::new()), MediaType::Json);
        assert_eq!(negotiate(&accept("*/*")), MediaType::Json);
        assert_eq!(negotiate(&accept("application/json")), MediaType::Json);
        assert_eq!(
            negotiate(&accept("application/graphql-response+json")),
            MediaType::GraphQLResponseJson
        );
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json, application/json;q=0.9"
            )),
            MediaType::GraphQLResponseJson
        );
        assert_eq!(
            negotiate(&accept(
                "application/json, application/graphql-response+json"
            )),
            MediaType::Json
        );
        assert_eq!(
            negotiate(&accept(
                "application/json;q=0.5, application/graphql-response+json"
            )),
            MediaType::GraphQLResponseJson
        );
        assert_eq!(negotiate(&accept("text/html")), MediaType::Json);
    }
}
