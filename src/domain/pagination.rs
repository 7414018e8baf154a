//! Keyset pagination over id-ordered lists, shared by every connection.
//!
//! A page is asked for with `first`/`after` (forwards) or `last`/`before`
//! (backwards). Cursors are opaque strings wrapping the row id, so a page stays
//! stable while rows are added.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};

use crate::error::{AppError, AppResult};

const CURSOR_PREFIX: &str = "id:";

/// A validated page request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub first: Option<usize>,
    pub last: Option<usize>,
}

/// One page of rows plus what a client needs to ask for the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_previous_page: bool,
    pub has_next_page: bool,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_previous_page: self.has_previous_page,
            has_next_page: self.has_next_page,
        }
    }
}

pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

pub fn decode_cursor(field: &str, cursor: &str) -> AppResult<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX)?.parse().ok())
        .ok_or_else(|| AppError::field(field, format!("`{cursor}` is not a valid cursor")))
}

impl PageRequest {
    /// Validate raw connection arguments. Without `first` or `last`, the
    /// first `max` rows are returned; asking for more than `max` is an error
    /// rather than a silent truncation.
    pub fn parse(
        first: Option<i32>,
        after: Option<&str>,
        last: Option<i32>,
        before: Option<&str>,
        max: usize,
    ) -> AppResult<Self> {
        let size = |field: &str, value: Option<i32>| -> AppResult<Option<usize>> {
            match value {
                None => Ok(None),
                Some(n) if n < 0 => Err(AppError::field(
                    field,
                    format!("`{field}` must not be negative"),
                )),
                Some(n) if n as usize > max => Err(AppError::field(
                    field,
                    format!("`{field}` must be at most {max}"),
                )),
                Some(n) => Ok(Some(n as usize)),
            }
        };
        let first = size("first", first)?;
        let last = size("last", last)?;
        if first.is_some() && last.is_some() {
            return Err(AppError::BadInput(
                "Pass either `first` or `last`, not both".to_owned(),
            ));
        }
        Ok(PageRequest {
            after: after.map(|c| decode_cursor("after", c)).transpose()?,
            before: before.map(|c| decode_cursor("before", c)).transpose()?,
            first: if last.is_none() {
                Some(first.unwrap_or(max))
            } else {
                None
            },
            last,
        })
    }
}

/// Fetch one page of `select`, ordered by `id_column` ascending.
pub async fn fetch_page<E, C>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    id_column: C,
    page: PageRequest,
) -> AppResult<Page<E::Model>>
where
    E: EntityTrait,
    C: ColumnTrait,
    E::Model: Sync,
{
    let mut select = select;
    if let Some(after) = page.after {
        select = select.filter(id_column.gt(after));
    }
    if let Some(before) = page.before {
        select = select.filter(id_column.lt(before));
    }
    if let Some(last) = page.last {
        let mut items = select
            .order_by_desc(id_column)
            .limit(last as u64 + 1)
            .all(db)
            .await?;
        let has_previous_page = items.len() > last;
        items.truncate(last);
        items.reverse();
        let has_next_page = page.before.is_some();
        return Ok(Page {
            items,
            has_previous_page,
            has_next_page,
        });
    }
    let first = page.first.unwrap_or(0);
    let mut items = select
        .order_by_asc(id_column)
        .limit(first as u64 + 1)
        .all(db)
        .await?;
    let has_next_page = items.len() > first;
    items.truncate(first);
    // Rows before the `after` cursor exist (the cursor's own row at least);
    // Relay lets the flag be approximate in the other direction.
    let has_previous_page = page.after.is_some();
    Ok(Page {
        items,
        has_previous_page,
        has_next_page,
    })
}

/// The number of rows `select` matches, for `totalCount`.
pub async fn count<E>(db: &impl ConnectionTrait, select: Select<E>) -> AppResult<u64>
where
    E: EntityTrait,
    E::Model: Sync,
{
    Ok(select.count(db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor("after", &encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("after", "not-a-cursor").is_err());
        assert!(decode_cursor("after", &URL_SAFE_NO_PAD.encode("x:1")).is_err());
    }

    #[test]
    fn page_requests_are_validated() {
        let page = PageRequest::parse(None, None, None, None, 50).unwrap();
        assert_eq!(page.first, Some(50));
        assert!(PageRequest::parse(Some(-1), None, None, None, 50).is_err());
        assert!(PageRequest::parse(Some(51), None, None, None, 50).is_err());
        assert!(PageRequest::parse(Some(1), None, Some(1), None, 50).is_err());
        let page = PageRequest::parse(None, None, Some(5), None, 50).unwrap();
        assert_eq!((page.first, page.last), (None, Some(5)));
    }
}
