//! The GraphQL schema, independent of HTTP.
//!
//! Each domain area owns its part of the root types (merged here). The
//! schema carries shared services as data; per-request data (the viewer, the
//! DataLoader) is attached by [`prepare`], which every transport calls.

mod auth;
mod chat;
mod connection;
mod introspection;
pub mod limits;
pub mod loaders;
mod messages;
mod order;
mod room_events;
mod rooms;
mod search;
pub mod subscriptions;
mod tasks;
mod users;

use async_graphql::{
    Context, ErrorExtensions, MergedObject, MergedSubscription, Request, Schema, SchemaBuilder,
    ServerError,
};
use futures::{StreamExt, stream::BoxStream};
use sea_orm::DatabaseConnection;
use tokio::sync::OnceCell;

use std::{sync::Arc, time::Duration};

use crate::{
    accounts::Accounts,
    config::Config,
    error::AppResult,
    events::EventBus,
    identity::{Identity, KnownUsers},
    presence::Presence,
    ratelimit::Throttle,
    readmodel::RoomViews,
    sends::Sends,
    service::permissions::Permissions,
    typing::Typing,
};

use async_graphql::dataloader::Loader;
pub use connection::TotalCount;
use limits::QueryLimits;
use loaders::{LoadError, Loaders};

#[derive(MergedObject, Default)]
pub struct Query(
    users::UserQuery,
    rooms::RoomQuery,
    messages::MessageQuery,
    search::SearchQuery,
    tasks::TaskQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    auth::AuthMutation,
    users::UserMutation,
    rooms::RoomMutation,
    messages::MessageMutation,
    chat::ChatMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(
    subscriptions::MessageSubscription,
    room_events::RoomEventSubscription,
);

pub type ChatSchema = Schema<Query, Mutation, Subscription>;

pub use subscriptions::SubscriptionSettings;

/// Settings resolvers need at run time.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_page_size: usize,
    pub token_ttl: chrono::Duration,
}

fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
}

/// The services resolvers call.
pub struct Services {
    pub sends: Sends,
    pub accounts: Accounts,
    pub events: Arc<dyn EventBus>,
    pub typing: Arc<Typing>,
    pub presence: Arc<Presence>,
    pub throttle: Arc<Throttle>,
    pub permissions: Arc<Permissions>,
}

/// The executable schema, with its limits and services.
pub fn build(config: &Config, db: DatabaseConnection, services: Services) -> ChatSchema {
    let mut builder = builder()
        .data(db)
        .data(services.sends)
        .data(services.accounts)
        .data(services.events)
        .data(services.typing)
        .data(services.presence)
        .data(services.throttle)
        .data(services.permissions)
        .data(SubscriptionSettings {
            recheck: config.unread_recheck(),
        })
        .data(Limits {
            max_page_size: config.max_page_size.max(1),
            token_ttl: config.token_ttl(),
        })
        // Depth is limited (outside introspection) by `limits`, before this.
        .limit_complexity(config.graphql_max_complexity);
    if !config.graphql_introspection {
        builder = builder
            .disable_introspection()
            .extension(introspection::RefuseIntrospection);
    }
    builder.finish()
}

/// The schema in SDL, as committed in `schema.graphql`: what a client
/// sees through introspection (`@specifiedBy` on scalars included).
pub fn sdl() -> String {
    let sdl = builder()
        .finish()
        .sdl_with_options(async_graphql::SDLExportOptions::new().include_specified_by());
    // async-graphql answers `__schema { description }` with a fixed text, so
    // a client that introspects sees a described schema definition.
    match sdl.rfind("\nschema {") {
        Some(at) => format!(
            "{}\n\"\"\"\n{SCHEMA_DESCRIPTION}\n\"\"\"{}",
            &sdl[..at],
            &sdl[at..]
        ),
        None => sdl,
    }
}

/// The schema's description as introspection shows it.
const SCHEMA_DESCRIPTION: &str = "A GraphQL Schema defines the capabilities of a GraphQL server. \
    It exposes all available types and directives on the server, as well as the entry points for \
    query, mutation, and subscription operations.";

/// Who is asking, resolved at most once per request.
pub struct Viewer {
    identity: Identity,
    resolved: OnceCell<i64>,
}

impl Viewer {
    pub fn new(identity: Identity) -> Self {
        Viewer {
            identity,
            resolved: OnceCell::new(),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

/// A response as the transports send it.
pub struct Executed {
    pub response: async_graphql::Response,
    /// Refused before execution by a limit or a bad input string: the
    /// client must change the request (HTTP 400).
    pub refused: bool,
}

/// The schema with what runs around every operation: admission limits, the
/// execution deadline, per-request data, response order and size.
#[derive(Clone)]
pub struct Gateway {
    pub schema: ChatSchema,
    db: DatabaseConnection,
    views: Arc<RoomViews>,
    presence: Arc<Presence>,
    limits: Arc<QueryLimits>,
    timeout: Duration,
    max_response_bytes: usize,
}

impl Gateway {
    pub fn new(
        schema: ChatSchema,
        db: DatabaseConnection,
        views: Arc<RoomViews>,
        presence: Arc<Presence>,
        config: &Config,
    ) -> Self {
        Gateway {
            schema,
            db,
            views,
            presence,
            limits: Arc::new(QueryLimits::from_config(config)),
            timeout: config.graphql_timeout(),
            max_response_bytes: config.graphql_max_response_bytes,
        }
    }

    fn admit(&self, request: &mut Request) -> Result<order::Plan, ServerError> {
        self.limits.admit(request).inspect_err(|error| {
            let limit = error
                .extensions
                .as_ref()
                .and_then(|e| match e.get("limit").or_else(|| e.get("code")) {
                    Some(async_graphql::Value::String(limit)) => Some(limit.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "parse".to_owned());
            crate::metrics::count("graphql_refused_total", "limit", &limit);
        })
    }

    /// Execute one request with its per-request data (viewer, loaders),
    /// within the deadline.
    pub async fn execute(
        &self,
        mut request: Request,
        identity: Identity,
        client: crate::http::ClientIp,
    ) -> Executed {
        let (kind, named) = operation_of(&request.query);
        let name = request.operation_name.clone().or(named);
        let started = std::time::Instant::now();
        let plan = match self.admit(&mut request) {
            Ok(plan) => plan,
            Err(error) => {
                let refused = limits::is_refusal(&error);
                return Executed {
                    response: async_graphql::Response::from_errors(vec![error]),
                    refused,
                };
            }
        };
        let (loaders, rounds) =
            loaders::per_request(self.db.clone(), self.views.clone(), self.presence.clone());
        let request = request
            .data(Viewer::new(identity))
            .data(loaders)
            .data(client);
        let execution = rounds.drive(self.schema.execute(request));
        let mut response = match tokio::time::timeout(self.timeout, execution).await {
            Ok(response) => response,
            Err(_) => {
                crate::metrics::count("graphql_refused_total", "limit", "GRAPHQL_TIMEOUT_MS");
                timed_out(self.timeout)
            }
        };
        let refused = refuse_complexity(&mut response);
        plan.apply(&mut response.data);
        crate::metrics::graphql_operation(kind, name.as_deref(), started.elapsed());
        Executed { response, refused }
    }

    /// Execute one operation over a websocket: a stream of responses (one
    /// for a query or mutation, one per event for a subscription).
    ///
    /// The operation runs in a task of its own, one response ahead of its
    /// reader (see [`Running`]): what it reads from the database it reads
    /// to the end whether or not the client is reading, so a client that
    /// stops reading never holds a database connection.
    pub fn execute_stream(
        &self,
        mut request: Request,
        identity: Identity,
        client: crate::http::ClientIp,
    ) -> BoxStream<'static, async_graphql::Response> {
        let plan = match self.admit(&mut request) {
            Ok(plan) => plan,
            Err(error) => {
                let response = async_graphql::Response::from_errors(vec![error]);
                return futures::stream::once(async move { response }).boxed();
            }
        };
        let (loaders, rounds) =
            loaders::per_request(self.db.clone(), self.views.clone(), self.presence.clone());
        let request = request
            .data(Viewer::new(identity))
            .data(loaders)
            .data(client);
        let responses = rounds
            .drive_stream(self.schema.execute_stream(request))
            .map(move |mut response| {
                plan.apply(&mut response.data);
                response
            })
            .boxed();
        Running::start(responses).boxed()
    }

    /// A response as JSON bytes; one over `GRAPHQL_MAX_RESPONSE_BYTES` is
    /// replaced by an error saying so.
    pub fn to_json(&self, response: &async_graphql::Response) -> Vec<u8> {
        let bytes = serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec());
        if bytes.len() <= self.max_response_bytes {
            return bytes;
        }
        crate::metrics::count(
            "graphql_refused_total",
            "limit",
            "GRAPHQL_MAX_RESPONSE_BYTES",
        );
        let mut error = ServerError::new(
            format!(
                "The response is {} bytes, more than the {} allowed (GRAPHQL_MAX_RESPONSE_BYTES); \
                 select fewer fields or smaller pages",
                bytes.len(),
                self.max_response_bytes
            ),
            None,
        );
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", limits::LIMIT_EXCEEDED);
        extensions.set("limit", "GRAPHQL_MAX_RESPONSE_BYTES");
        error.extensions = Some(extensions);
        serde_json::to_vec(&async_graphql::Response::from_errors(vec![error]))
            .unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// An operation running in a task of its own, as a stream of its
/// responses. The task computes the next response while the previous one
/// waits to be taken (a channel of one), then waits itself, between two
/// responses, never inside one: whatever a response needs (its database
/// reads included) is finished and released before the task waits for the
/// reader. A panic in the operation ends it with an `INTERNAL` error
/// instead of taking its transport down. Dropping the stream stops the task.
pub struct Running {
    /// Boxed: a waiting task and the channel then hold a pointer, not a
    /// whole response (every live subscription has both).
    results: futures::channel::mpsc::Receiver<Box<async_graphql::Response>>,
    producer: tokio::task::AbortHandle,
}

impl Running {
    pub fn start(mut responses: BoxStream<'static, async_graphql::Response>) -> Running {
        use futures::{FutureExt, SinkExt};
        let (mut results, receiver) = futures::channel::mpsc::channel(0);
        let producer = tokio::spawn(async move {
            loop {
                let next = std::panic::AssertUnwindSafe(responses.next())
                    .catch_unwind()
                    .await;
                let (response, last) = match next {
                    Ok(Some(response)) => (Box::new(response), false),
                    Ok(None) => return,
                    // The panic hook logged where; the operation is over.
                    Err(_) => (Box::new(internal_error()), true),
                };
                if results.send(response).await.is_err() || last {
                    return;
                }
            }
        });
        Running {
            results: receiver,
            producer: producer.abort_handle(),
        }
    }
}

impl futures::Stream for Running {
    type Item = async_graphql::Response;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.results.poll_next_unpin(cx).map(|r| r.map(|r| *r))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.producer.abort();
    }
}

/// The answer of an operation that failed inside (a panic).
fn internal_error() -> async_graphql::Response {
    let mut error = ServerError::new("Internal server error", None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "INTERNAL");
    error.extensions = Some(extensions);
    async_graphql::Response::from_errors(vec![error])
}

/// async-graphql's complexity check (it knows each field's cost) words its
/// refusal like a validation error; make it a refusal like the others.
/// True when it refused the operation.
fn refuse_complexity(response: &mut async_graphql::Response) -> bool {
    const MESSAGE: &str = "Query is too complex.";
    let Some(error) = response
        .errors
        .iter_mut()
        .find(|e| e.path.is_empty() && e.message == MESSAGE)
    else {
        return false;
    };
    error.message = "Query refused: the operation is more complex than allowed \
        (GRAPHQL_MAX_COMPLEXITY); ask for smaller pages or fewer fields."
        .to_owned();
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", limits::LIMIT_EXCEEDED);
    extensions.set("limit", "GRAPHQL_MAX_COMPLEXITY");
    error.extensions = Some(extensions);
    crate::metrics::count("graphql_refused_total", "limit", "GRAPHQL_MAX_COMPLEXITY");
    true
}

/// The answer to an operation cancelled at its deadline.
fn timed_out(timeout: Duration) -> async_graphql::Response {
    let mut error = ServerError::new(
        format!(
            "The operation did not finish within {} ms and was cancelled (GRAPHQL_TIMEOUT_MS)",
            timeout.as_millis()
        ),
        None,
    );
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "TIMEOUT");
    error.extensions = Some(extensions);
    async_graphql::Response::from_errors(vec![error])
}

/// The type (`query`, `mutation`, `subscription`) and name of the first
/// operation in a document, for metrics: a cheap look at the text (the
/// executor parses it properly).
fn operation_of(query: &str) -> (&'static str, Option<String>) {
    let body = query.trim_start();
    let (kind, rest) = ["mutation", "subscription", "query"]
        .into_iter()
        .find_map(|kind| body.strip_prefix(kind).map(|rest| (kind, rest)))
        .unwrap_or(("query", ""));
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (kind, Some(name).filter(|n| !n.is_empty()))
}

/// Shared accessors for resolvers.
pub(crate) trait ContextExt {
    fn db(&self) -> &DatabaseConnection;
    fn limits(&self) -> &Limits;
    fn loaders(&self) -> &Loaders;
    fn sends(&self) -> &Sends;
    /// The client's address, when the transport knows it.
    fn client_ip(&self) -> Option<std::net::IpAddr>;
    fn accounts(&self) -> &Accounts;
    fn events(&self) -> &Arc<dyn EventBus>;
    fn typing(&self) -> &Arc<Typing>;
    fn throttle(&self) -> &Throttle;
    fn permissions(&self) -> &Arc<Permissions>;
    fn known_users(&self) -> &KnownUsers;
    fn viewer(&self) -> Option<&Viewer>;
    /// The viewer's user id; `UNAUTHENTICATED` when there is none.
    async fn viewer_id(&self) -> AppResult<i64>;
    /// The viewer's user id, or `None` for an anonymous request. A request
    /// that tried to identify and failed is still an error.
    async fn optional_viewer_id(&self) -> AppResult<Option<i64>>;
}

impl ContextExt for Context<'_> {
    fn db(&self) -> &DatabaseConnection {
        self.data_unchecked::<DatabaseConnection>()
    }

    fn limits(&self) -> &Limits {
        self.data_unchecked::<Limits>()
    }

    fn loaders(&self) -> &Loaders {
        self.data_unchecked::<Loaders>()
    }

    fn sends(&self) -> &Sends {
        self.data_unchecked::<Sends>()
    }

    fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.data_opt::<crate::http::ClientIp>().and_then(|c| c.0)
    }

    fn accounts(&self) -> &Accounts {
        self.data_unchecked::<Accounts>()
    }

    fn events(&self) -> &Arc<dyn EventBus> {
        self.data_unchecked::<Arc<dyn EventBus>>()
    }

    fn typing(&self) -> &Arc<Typing> {
        self.data_unchecked::<Arc<Typing>>()
    }

    fn throttle(&self) -> &Throttle {
        self.data_unchecked::<Arc<Throttle>>()
    }

    fn permissions(&self) -> &Arc<Permissions> {
        self.data_unchecked::<Arc<Permissions>>()
    }

    fn known_users(&self) -> &KnownUsers {
        self.accounts().known_users()
    }

    fn viewer(&self) -> Option<&Viewer> {
        self.data_opt::<Viewer>()
    }

    async fn viewer_id(&self) -> AppResult<i64> {
        let Some(viewer) = self.viewer() else {
            return Identity::Anonymous
                .require(self.db(), self.known_users())
                .await;
        };
        viewer
            .resolved
            .get_or_try_init(|| viewer.identity.require(self.db(), self.known_users()))
            .await
            .copied()
    }

    async fn optional_viewer_id(&self) -> AppResult<Option<i64>> {
        match self.viewer().map(Viewer::identity) {
            None | Some(Identity::Anonymous) => Ok(None),
            Some(_) => self.viewer_id().await.map(Some),
        }
    }
}

/// Turn a loader failure into a GraphQL error with its code.
pub(crate) fn load_error(error: LoadError) -> async_graphql::Error {
    error.as_ref().extend()
}

/// Load one value through the request's DataLoader.
pub(crate) async fn load<K>(
    ctx: &Context<'_>,
    key: K,
) -> async_graphql::Result<Option<<loaders::DbLoader as Loader<K>>::Value>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    loaders::DbLoader: Loader<K, Error = LoadError>,
{
    ctx.loaders().load_one(key).await.map_err(load_error)
}
