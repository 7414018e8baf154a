//! Relay cursor connections built from domain pages.

use async_graphql::{
    Context, SimpleObject,
    connection::{Connection, Edge},
};

use crate::{
    domain::pagination::{self, Page, PageRequest},
    error::AppResult,
};

use super::ContextExt;

/// Extra fields of every connection.
#[derive(SimpleObject, Debug, Clone, Copy, Default)]
pub struct TotalCount {
    /// Number of items in the whole list, across all pages.
    pub total_count: i64,
}

/// Validate connection arguments against the configured page size.
pub fn page_request(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> AppResult<PageRequest> {
    PageRequest::parse(
        first,
        after.as_deref(),
        last,
        before.as_deref(),
        ctx.limits().max_page_size,
    )
}

/// The page size assumed for complexity when a query gives neither `first`
/// nor `last` (the default maximum page size).
const ASSUMED_PAGE: usize = 100;

/// Complexity of a connection field: its page size times its children.
pub fn page_cost(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let size = first
        .or(last)
        .map(|n| n.max(0) as usize)
        .unwrap_or(ASSUMED_PAGE);
    1 + size.max(1) * child_complexity
}

/// True when the query selects `totalCount`, so the count is only run when
/// someone reads it.
pub fn wants_total(ctx: &Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}

pub fn connection<T, N: async_graphql::OutputType>(
    page: Page<T>,
    total: u64,
    id_of: impl Fn(&T) -> i64,
    node: impl Fn(T) -> N,
) -> Connection<String, N, TotalCount> {
    let mut connection = Connection::with_additional_fields(
        page.has_previous_page,
        page.has_next_page,
        TotalCount {
            total_count: total as i64,
        },
    );
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|item| Edge::new(pagination::encode_cursor(id_of(&item)), node(item))),
    );
    connection
}
