//! Searching the messages a user can read (those of the rooms they are a
//! current member of; deleted messages never match): every word of the
//! query must start a word of the text (a one-letter word must be a whole
//! word), best matches first.
//!
//! PostgreSQL matches with a generated `tsvector` column (GIN index),
//! SQLite with FTS5; both index the current text, so edits and deletes show
//! at once. A score depends on the matched message alone, never on what
//! else the index holds: PostgreSQL's `ts_rank` reads only the message's
//! vector, while FTS5's `bm25` weighs words by how often they occur in
//! every room (a stranger writing a word in a private room would move the
//! scores a viewer sees), so SQLite scores each hit from its own text: how
//! often each word starts a word of it, against its length. Snippets are
//! cut here, the same way on both.

use entity::message;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DbErr, FromQueryResult, QueryResult, Statement, Value,
};

use crate::error::{AppError, AppResult};

/// Longest query, in characters.
pub const QUERY_MAX_CHARS: usize = 256;
/// Most words a query may hold.
pub const MAX_TERMS: usize = 8;
/// Shortest word matched as a prefix of words.
const PREFIX_MIN_CHARS: usize = 2;
/// Deepest result a page may start at.
pub const MAX_OFFSET: u64 = 10_000;
/// Words shown around the first match in a snippet.
const SNIPPET_WORDS: usize = 16;
/// A text this short is shown whole.
const SNIPPET_WHOLE_CHARS: usize = 160;

/// The words of a query, lowercased: runs of letters and digits.
pub fn terms(query: &str) -> AppResult<Vec<String>> {
    let bad = |message: String| AppError::field("query", message);
    if query.chars().count() > QUERY_MAX_CHARS {
        return Err(bad(format!(
            "query must be at most {QUERY_MAX_CHARS} characters"
        )));
    }
    let mut terms: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if !word.is_empty() && !terms.contains(&word) {
            terms.push(word);
        }
    }
    if terms.is_empty() {
        return Err(bad("query must contain a word".to_owned()));
    }
    if terms.len() > MAX_TERMS {
        return Err(bad(format!("query must have at most {MAX_TERMS} words")));
    }
    Ok(terms)
}

/// One match: the message and its score (higher is better; comparable
/// within one search only).
#[derive(Debug, Clone)]
pub struct Hit {
    pub message: message::Model,
    pub score: f64,
}

impl FromQueryResult for Hit {
    /// A message's columns and its `score`.
    fn from_query_result(row: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(Hit {
            message: message::Model::from_query_result(row, pre)?,
            score: row.try_get(pre, "score")?,
        })
    }
}

/// The `FROM ... WHERE ...` of a search, its score, its order, and the
/// values they use.
fn clause(
    backend: DatabaseBackend,
    viewer: i64,
    terms: &[String],
    room: Option<i64>,
) -> (String, String, &'static str, Vec<Value>) {
    // Terms are letters and digits only, so neither syntax can be broken
    // by them; they still travel as a bound value.
    let (from, matches, score, order) = match backend {
        DatabaseBackend::Postgres => (
            "messages m",
            "m.search @@ to_tsquery('simple'::regconfig, $1)",
            "ts_rank(m.search, to_tsquery('simple'::regconfig, $1))::float8",
            "score DESC, m.id DESC",
        ),
        _ => (
            "messages_fts JOIN messages m ON m.id = messages_fts.rowid",
            "messages_fts MATCH $1",
            "",
            "score DESC, m.id DESC",
        ),
    };
    let score = match backend {
        DatabaseBackend::Postgres => score.to_owned(),
        _ => own_text_score(terms),
    };
    // A word of one letter matches as a whole word only: as a prefix it
    // would match most of the index.
    let prefix = |t: &String| t.chars().count() >= PREFIX_MIN_CHARS;
    let query = match backend {
        DatabaseBackend::Postgres => terms
            .iter()
            .map(|t| format!("{t}{}", if prefix(t) { ":*" } else { "" }))
            .collect::<Vec<_>>()
            .join(" & "),
        _ => terms
            .iter()
            .map(|t| format!("\"{t}\"{}", if prefix(t) { "*" } else { "" }))
            .collect::<Vec<_>>()
            .join(" AND "),
    };
    let mut values: Vec<Value> = vec![query.into(), viewer.into()];
    let mut sql = format!(
        "FROM {from} WHERE {matches} AND m.deleted_at IS NULL \
         AND m.room_id IN (SELECT room_id FROM memberships WHERE user_id = $2 AND left_at IS NULL)"
    );
    if let Some(room) = room {
        sql.push_str(" AND m.room_id = $3");
        values.push(room.into());
    }
    (sql, score, order, values)
}

/// SQLite's score of a hit, from its own text only: for each word of the
/// query, how many words of the text it starts (at least one: the hit
/// matched), saturating, and less for a longer text (BM25's shape, with a
/// fixed typical length in place of the corpus's). Counting sees words
/// after a space, lowercased as SQLite lowercases (ASCII).
fn own_text_score(terms: &[String]) -> String {
    // Terms are letters and digits only (see `terms`): nothing to escape.
    let text = "(' ' || lower(m.text))";
    terms
        .iter()
        .map(|term| {
            let word: String = term.chars().filter(|c| c.is_alphanumeric()).collect();
            let starts = format!(
                "MAX(1.0, (length({text}) - length(replace({text}, ' {word}', ''))) / {}.0)",
                word.chars().count() + 1
            );
            format!("({starts} / ({starts} + 0.5 + 1.5 * length(m.text) / 100.0))")
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// One page of matches (`limit` from `offset`), and whether more follow.
pub async fn search(
    db: &impl ConnectionTrait,
    viewer: i64,
    terms: &[String],
    room: Option<i64>,
    offset: u64,
    limit: u64,
) -> AppResult<(Vec<Hit>, bool)> {
    if offset > MAX_OFFSET {
        return Err(AppError::field(
            "after",
            format!("search results end after {MAX_OFFSET}; refine the query"),
        ));
    }
    let backend = db.get_database_backend();
    let (clause, score, order, values) = clause(backend, viewer, terms, room);
    let sql = format!(
        "SELECT m.id, m.room_id, m.sender_id, m.text, m.sent_at, m.task_id, m.seq, \
                m.edited_at, m.deleted_at, m.reply_to_id, {score} AS score \
         {clause} ORDER BY {order} LIMIT {} OFFSET {offset}",
        limit + 1
    );
    let mut hits = Hit::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
        .all(db)
        .await?;
    let more = hits.len() as u64 > limit;
    hits.truncate(limit as usize);
    Ok((hits, more))
}

#[derive(FromQueryResult)]
struct CountRow {
    n: i64,
}

/// How many messages match.
pub async fn count(
    db: &impl ConnectionTrait,
    viewer: i64,
    terms: &[String],
    room: Option<i64>,
) -> AppResult<u64> {
    let backend = db.get_database_backend();
    let (clause, _, _, values) = clause(backend, viewer, terms, room);
    let sql = format!("SELECT COUNT(*) AS n {clause}");
    let row = CountRow::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
        .one(db)
        .await?;
    Ok(row.map_or(0, |r| r.n as u64))
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
}

/// The part of `text` around its first match, HTML-escaped, with every
/// word that a term starts wrapped in `<mark>`…`</mark>`, and `…` where
/// the text was cut.
pub fn snippet(text: &str, terms: &[String]) -> String {
    // Words as byte ranges, and whether each matches.
    let mut words: Vec<(usize, usize, bool)> = Vec::new();
    let mut start = None;
    for (at, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_alphanumeric() && at < text.len(), start) {
            (true, None) => start = Some(at),
            (false, Some(from)) => {
                let word = text[from..at].to_lowercase();
                let hit = terms.iter().any(|t| {
                    if t.chars().count() >= PREFIX_MIN_CHARS {
                        word.starts_with(t.as_str())
                    } else {
                        word == *t
                    }
                });
                words.push((from, at, hit));
                start = None;
            }
            _ => {}
        }
    }
    let first_hit = words.iter().position(|w| w.2).unwrap_or(0);
    let (first, last) = if text.chars().count() <= SNIPPET_WHOLE_CHARS {
        (0, words.len())
    } else {
        let first = first_hit.saturating_sub(SNIPPET_WORDS / 4);
        (first, (first + SNIPPET_WORDS).min(words.len()))
    };
    // Cut at white space, so no word is split ("I'd" is two words). White
    // space may be more than one byte (U+00A0 before French punctuation,
    // U+3000): the cut is after the whole character.
    let from = match words.get(first) {
        Some(word) if first > 0 => text[..word.0]
            .char_indices()
            .rfind(|(_, c)| c.is_whitespace())
            .map_or(0, |(at, c)| at + c.len_utf8()),
        _ => 0,
    };
    let to = match last.checked_sub(1).and_then(|l| words.get(l)) {
        Some(word) if last < words.len() => text[word.1..]
            .find(char::is_whitespace)
            .map_or(text.len(), |at| word.1 + at),
        _ => text.len(),
    };
    let mut out = String::with_capacity(to - from + 32);
    if from > 0 {
        out.push('…');
    }
    let mut at = from;
    for &(start, end, hit) in &words[first..last] {
        if !hit {
            continue;
        }
        escape_into(&mut out, &text[at..start]);
        out.push_str("<mark>");
        escape_into(&mut out, &text[start..end]);
        out.push_str("</mark>");
        at = end;
    }
    escape_into(&mut out, &text[at..to]);
    if to < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_terms() {
        assert_eq!(
            terms("Hello, wörld! hello").unwrap(),
            vec!["hello", "wörld"]
        );
        assert!(terms("  ...  ").is_err());
        assert!(terms(&"a ".repeat(9)).is_ok()); // one distinct word
        assert!(terms("a b c d e f g h i").is_err());
        assert!(terms(&"x".repeat(QUERY_MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn snippets_mark_matches_and_escape_the_rest() {
        let terms = vec!["pizz".to_owned()];
        assert_eq!(
            snippet("<b>Pizza</b> tonight?", &terms),
            "&lt;b&gt;<mark>Pizza</mark>&lt;/b&gt; tonight?"
        );
        let long: String = (0..60).map(|n| format!("w{n} ")).collect::<String>() + "pizza end";
        let cut = snippet(&long, &terms);
        assert!(
            cut.starts_with('…') && cut.contains("<mark>pizza</mark>"),
            "{cut}"
        );
        assert!(!cut.contains("w1 "), "{cut}");
        assert_eq!(snippet("no match", &terms), "no match");
    }

    #[test]
    fn snippets_cut_after_white_space_of_any_width() {
        let terms = vec!["nbsptarget".to_owned()];
        for space in ['\u{a0}', '\u{3000}', '\u{2009}', ' '] {
            let text = format!("{}nbsptarget", format!("w{space}").repeat(100));
            let cut = snippet(&text, &terms);
            assert!(cut.ends_with("<mark>nbsptarget</mark>"), "{cut}");
            assert!(cut.starts_with("…w"), "{cut}");
            // And the match at the very start, the middle, and the end.
            let text = format!("nbsptarget{}", format!("{space}mot").repeat(80));
            assert!(snippet(&text, &terms).starts_with("<mark>nbsptarget</mark>"));
        }
        // French punctuation: a narrow no-break space before `?` and `:`.
        let text = format!(
            "{}Qui vient\u{202f}? nbsptarget\u{a0}: oui",
            "bla\u{a0}".repeat(60)
        );
        assert!(snippet(&text, &terms).contains("<mark>nbsptarget</mark>"));
    }
}
