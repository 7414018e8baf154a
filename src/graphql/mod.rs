//! The GraphQL schema, independent of HTTP.
//!
//! Each domain area owns its part of the root types (merged here). The
//! schema carries shared services as data; per-request data (the viewer, the
//! DataLoader) is attached by [`prepare`], which every transport calls.

mod auth;
mod connection;
mod introspection;
pub mod loaders;
mod messages;
mod rooms;
pub mod subscriptions;
mod tasks;
mod users;

use async_graphql::{Context, ErrorExtensions, MergedObject, Schema, SchemaBuilder};
use sea_orm::DatabaseConnection;
use tokio::sync::OnceCell;

use std::sync::Arc;

use crate::{
    accounts::Accounts,
    config::Config,
    error::AppResult,
    events::EventBus,
    identity::{Identity, KnownUsers},
    jobs::Jobs,
};

use async_graphql::dataloader::Loader;
pub use connection::TotalCount;
use loaders::{LoadError, Loaders};

#[derive(MergedObject, Default)]
pub struct Query(
    users::UserQuery,
    rooms::RoomQuery,
    messages::MessageQuery,
    tasks::TaskQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    auth::AuthMutation,
    users::UserMutation,
    rooms::RoomMutation,
    messages::MessageMutation,
);

pub type ChatSchema = Schema<Query, Mutation, Subscription>;

pub use subscriptions::{Subscription, SubscriptionSettings};

/// Settings resolvers need at run time.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_page_size: usize,
    pub token_ttl: chrono::Duration,
}

fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), Mutation::default(), Subscription)
}

/// The executable schema, with its limits and services.
pub fn build(
    config: &Config,
    db: DatabaseConnection,
    jobs: Jobs,
    accounts: Accounts,
    events: Arc<dyn EventBus>,
) -> ChatSchema {
    let mut builder = builder()
        .data(db)
        .data(jobs)
        .data(accounts)
        .data(events)
        .data(SubscriptionSettings {
            recheck: config.unread_recheck(),
        })
        .data(Limits {
            max_page_size: config.max_page_size.max(1),
            token_ttl: config.token_ttl(),
        })
        .limit_depth(config.graphql_max_depth)
        .limit_complexity(config.graphql_max_complexity);
    if !config.graphql_introspection {
        builder = builder
            .disable_introspection()
            .extension(introspection::RefuseIntrospection);
    }
    builder.finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

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

/// Execute one request with its per-request data (viewer, loaders).
pub async fn execute(
    schema: &ChatSchema,
    db: &DatabaseConnection,
    request: async_graphql::Request,
    identity: Identity,
) -> async_graphql::Response {
    let (loaders, rounds) = loaders::per_request(db.clone());
    let (kind, named) = operation_of(&request.query);
    let name = request.operation_name.clone().or(named);
    let request = request.data(Viewer::new(identity)).data(loaders);
    let started = std::time::Instant::now();
    let response = rounds.drive(schema.execute(request)).await;
    crate::metrics::graphql_operation(kind, name.as_deref(), started.elapsed());
    response
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

/// Execute one operation over a websocket: a stream of responses (one for
/// a query or mutation, one per event for a subscription).
pub fn execute_stream(
    schema: &ChatSchema,
    db: &DatabaseConnection,
    request: async_graphql::Request,
    identity: Identity,
) -> impl futures::Stream<Item = async_graphql::Response> + Send + 'static {
    let (loaders, rounds) = loaders::per_request(db.clone());
    let request = request.data(Viewer::new(identity)).data(loaders);
    rounds.drive_stream(schema.execute_stream(request))
}

/// Shared accessors for resolvers.
pub(crate) trait ContextExt {
    fn db(&self) -> &DatabaseConnection;
    fn limits(&self) -> &Limits;
    fn loaders(&self) -> &Loaders;
    fn jobs(&self) -> &Jobs;
    fn accounts(&self) -> &Accounts;
    fn events(&self) -> &Arc<dyn EventBus>;
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

    fn jobs(&self) -> &Jobs {
        self.data_unchecked::<Jobs>()
    }

    fn accounts(&self) -> &Accounts {
        self.data_unchecked::<Accounts>()
    }

    fn events(&self) -> &Arc<dyn EventBus> {
        self.data_unchecked::<Arc<dyn EventBus>>()
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
