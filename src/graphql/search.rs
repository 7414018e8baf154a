//! Message search in GraphQL: a ranked, paginated list of the messages the
//! viewer can read, with a highlighted snippet per match.

use async_graphql::{
    Context, ID, Object, OutputType, Result, ResultExt, SimpleObject,
    connection::{Connection, ConnectionNameType, CursorType, Edge, EdgeNameType},
};

use super::{
    ContextExt, TotalCount,
    connection::{page_cost, wants_total},
    messages::Message,
    rooms::require_member,
    users::parse_id,
};
use crate::{
    domain::{pagination, search},
    error::AppError,
};

/// What a match adds to its message.
#[derive(SimpleObject)]
pub struct SearchMatch {
    /// The part of the text around the first match, HTML-escaped, with
    /// each matching word wrapped in `<mark>` and `</mark>`, and `…` where
    /// the text was cut.
    pub snippet: String,
    /// How well the message matches: higher is better, comparable within
    /// one search only.
    pub score: f64,
}

/// Search results: `MessageSearchConnection` of `MessageSearchEdge`s (a
/// message's edge carries its snippet and score).
pub struct SearchConnectionName;

impl ConnectionNameType for SearchConnectionName {
    fn type_name<T: OutputType>() -> String {
        "MessageSearchConnection".to_owned()
    }
}

pub struct SearchEdgeName;

impl EdgeNameType for SearchEdgeName {
    fn type_name<T: OutputType>() -> String {
        "MessageSearchEdge".to_owned()
    }
}

type Results =
    Connection<Offset, Message, TotalCount, SearchMatch, SearchConnectionName, SearchEdgeName>;

/// A position in the results (opaque to clients).
pub struct Offset(u64);

impl CursorType for Offset {
    type Error = AppError;

    fn decode_cursor(s: &str) -> Result<Self, AppError> {
        let offset = pagination::decode_cursor("after", s)?;
        u64::try_from(offset)
            .map(Offset)
            .map_err(|_| AppError::field("after", format!("`{s}` is not a valid cursor")))
    }

    fn encode_cursor(&self) -> String {
        pagination::encode_cursor(self.0 as i64)
    }
}

#[derive(Default)]
pub struct SearchQuery;

#[Object]
impl SearchQuery {
    /// Messages the viewer can read (in rooms they are a member of; only
    /// `roomId` with it) in which every word of `query` starts a word,
    /// best matches first, newest first among equals. Deleted messages
    /// never match; an edit is found by its new text at once. Forward
    /// pagination: `first` and `after`.
    #[graphql(complexity = "page_cost(first, None, child_complexity)")]
    async fn search_messages(
        &self,
        ctx: &Context<'_>,
        query: String,
        room_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Results> {
        let viewer = ctx.viewer_id().await.extend()?;
        let terms = search::terms(&query).extend()?;
        ctx.throttle().search(viewer).await.extend()?;
        let room = match room_id {
            Some(id) => {
                let room = parse_id("roomId", &id).extend()?;
                require_member(ctx, room).await?;
                Some(room)
            }
            None => None,
        };
        let max = ctx.limits().max_page_size as i32;
        let limit = match first {
            None => 20.min(max),
            Some(n) if (0..=max).contains(&n) => n,
            Some(_) => {
                return Err(AppError::field(
                    "first",
                    format!("first must be between 0 and {max}"),
                ))
                .extend();
            }
        } as u64;
        let offset = match after {
            Some(cursor) => Offset::decode_cursor(&cursor).extend()?.0 + 1,
            None => 0,
        };
        let db = ctx.db();
        let (hits, more) = search::search(db, viewer, &terms, room, offset, limit)
            .await
            .extend()?;
        let total = if wants_total(ctx) {
            search::count(db, viewer, &terms, room).await.extend()?
        } else {
            0
        };
        let total_count = total.min(i64::MAX as u64) as i64;
        let mut connection =
            Results::with_additional_fields(offset > 0, more, TotalCount { total_count });
        connection
            .edges
            .extend(hits.into_iter().enumerate().map(|(n, hit)| {
                let snippet = search::snippet(&hit.message.text, &terms);
                Edge::with_additional_fields(
                    Offset(offset + n as u64),
                    Message::of(hit.message),
                    SearchMatch {
                        snippet,
                        score: hit.score,
                    },
                )
            }));
        Ok(connection)
    }
}
