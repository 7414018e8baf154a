//! The GraphQL schema, independent of HTTP.
//!
//! Each domain area owns its part of the root types (merged here). The
//! schema carries the shared services as data; per-request data (the viewer)
//! is added by the transport in [`crate::http`].

mod connection;
mod users;

use async_graphql::{
    Context, EmptySubscription, MergedObject, Schema, SchemaBuilder, extensions::Tracing,
};
use sea_orm::DatabaseConnection;

use crate::{config::Config, error::AppResult, identity::Identity};

pub use connection::TotalCount;

#[derive(MergedObject, Default)]
pub struct Query(users::UserQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(users::UserMutation);

pub type ChatSchema = Schema<Query, Mutation, EmptySubscription>;

/// Settings resolvers need at run time.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_page_size: usize,
}

fn builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
}

/// The executable schema, with its limits and services.
pub fn build(config: &Config, db: DatabaseConnection) -> ChatSchema {
    let mut builder = builder()
        .data(db)
        .data(Limits {
            max_page_size: config.max_page_size.max(1),
        })
        .limit_depth(config.graphql_max_depth)
        .limit_complexity(config.graphql_max_complexity)
        .extension(Tracing);
    if !config.graphql_introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// Shared accessors for resolvers.
pub(crate) trait ContextExt {
    fn db(&self) -> &DatabaseConnection;
    fn limits(&self) -> &Limits;
    fn identity(&self) -> &Identity;
    async fn viewer_id(&self) -> AppResult<i64>;
}

static ANONYMOUS: Identity = Identity::Anonymous;

impl ContextExt for Context<'_> {
    fn db(&self) -> &DatabaseConnection {
        self.data_unchecked::<DatabaseConnection>()
    }

    fn limits(&self) -> &Limits {
        self.data_unchecked::<Limits>()
    }

    fn identity(&self) -> &Identity {
        self.data_opt::<Identity>().unwrap_or(&ANONYMOUS)
    }

    async fn viewer_id(&self) -> AppResult<i64> {
        self.identity().require(self.db()).await
    }
}
