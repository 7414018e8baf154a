//! Keyset pagination over id-ordered lists, shared by every connection.
//!
//! A page is asked for with `first`/`after` (forwards) or `last`/`before`
//! (backwards). Cursors are opaque strings wrapping the row id, so a page stays
//! stable while rows are added.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, PartialModelTrait, QueryFilter,
    QueryOrder, QuerySelect, Select,
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
    let (select, shape) = shape(select, id_column, page);
    Ok(shape.finish(select.all(db).await?))
}

/// [`fetch_page`], reading only the columns of `M`.
pub async fn fetch_partial_page<E, C, M>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    id_column: C,
    page: PageRequest,
) -> AppResult<Page<M>>
where
    E: EntityTrait,
    C: ColumnTrait,
    M: PartialModelTrait + Send + Sync,
{
    let (select, shape) = shape(select, id_column, page);
    Ok(shape.finish(select.into_partial_model::<M>().all(db).await?))
}

/// How the rows a paged select returns become the page.
struct Shape {
    page: PageRequest,
    limit: usize,
}

fn shape<E: EntityTrait, C: ColumnTrait>(
    select: Select<E>,
    id_column: C,
    page: PageRequest,
) -> (Select<E>, Shape) {
    let mut select = select;
    if let Some(after) = page.after {
        select = select.filter(id_column.gt(after));
    }
    if let Some(before) = page.before {
        select = select.filter(id_column.lt(before));
    }
    let (select, limit) = match page.last {
        Some(last) => (select.order_by_desc(id_column), last),
        None => (select.order_by_asc(id_column), page.first.unwrap_or(0)),
    };
    (select.limit(limit as u64 + 1), Shape { page, limit })
}

impl Shape {
    fn finish<T>(self, mut items: Vec<T>) -> Page<T> {
        let more = items.len() > self.limit;
        items.truncate(self.limit);
        if self.page.last.is_some() {
            items.reverse();
            return Page {
                items,
                has_previous_page: more,
                has_next_page: self.page.before.is_some(),
            };
        }
        // Rows before the `after` cursor exist (the cursor's own row at
        // least); Relay lets the flag be approximate in the other direction.
        Page {
            items,
            has_previous_page: self.page.after.is_some(),
            has_next_page: more,
        }
    }
}

/// One page of rows already in memory, ascending by id, with the same
/// answer [`fetch_page`] would give; `complete` says whether `items` are
/// all the rows. `None` when the answer needs rows that are not there.
pub fn page_in_memory<T: Clone>(
    items: &[T],
    id: impl Fn(&T) -> i64,
    complete: bool,
    page: PageRequest,
) -> Option<Page<T>> {
    let start = page
        .after
        .map_or(0, |after| items.partition_point(|t| id(t) <= after));
    let end = page.before.map_or(items.len(), |before| {
        items.partition_point(|t| id(t) < before)
    });
    let range = &items[start..end.max(start)];
    if let Some(last) = page.last {
        // Kept are the newest rows: the newest `last` before `before` are
        // all here if more than `last` are (or if these are all).
        if !complete && (page.after.is_some() || range.len() <= last) {
            return None;
        }
        let from = range.len().saturating_sub(last);
        return Some(Page {
            items: range[from..].to_vec(),
            has_previous_page: range.len() > last,
            has_next_page: page.before.is_some(),
        });
    }
    if !complete {
        return None;
    }
    let first = page.first.unwrap_or(0);
    Some(Page {
        items: range[..first.min(range.len())].to_vec(),
        has_previous_page: page.after.is_some(),
        has_next_page: range.len() > first,
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
    fn pages_in_memory_match_the_database_rules() {
        let ids: Vec<i64> = (1..=10).collect();
        let req = |first, after, last, before| PageRequest {
            first,
            after,
            last,
            before,
        };
        let page = page_in_memory(&ids, |i| *i, true, req(Some(3), Some(4), None, None)).unwrap();
        assert_eq!(page.items, vec![5, 6, 7]);
        assert!(page.has_previous_page && page.has_next_page);
        let page = page_in_memory(&ids, |i| *i, false, req(None, None, Some(4), None)).unwrap();
        assert_eq!(page.items, vec![7, 8, 9, 10]);
        assert!(page.has_previous_page && !page.has_next_page);
        let page = page_in_memory(&ids, |i| *i, true, req(None, None, Some(3), Some(3))).unwrap();
        assert_eq!(page.items, vec![1, 2]);
        assert!(!page.has_previous_page && page.has_next_page);
        // Not all rows are here: only the newest can be answered.
        assert!(page_in_memory(&ids, |i| *i, false, req(None, None, Some(10), None)).is_none());
        assert!(page_in_memory(&ids, |i| *i, false, req(Some(2), None, None, None)).is_none());
        assert!(page_in_memory(&ids, |i| *i, false, req(None, Some(1), Some(2), None)).is_none());
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
