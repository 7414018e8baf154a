//! Admission of GraphQL operations: what a document may cost, decided
//! before async-graphql validates or runs it.
//!
//! async-graphql's own depth and complexity checks walk the operation with
//! every fragment spread expanded, so a small document that expands to
//! billions of fields pins a core before any limit is seen. Here, in order,
//! each step bounded by the size of the text:
//! 1. [`tokens`]: a lexer counts tokens and bracket nesting (no parse yet);
//! 2. the parser runs on what is left (a bounded number of tokens);
//! 3. [`cost`]: fields, aliases, directives and root fields after fragment
//!    expansion, and depth outside introspection, each fragment measured
//!    once;
//! 4. [`inputs`]: strings and list sizes of every argument and variable.
//!
//! Introspection is measured like any query, except that its depth (bounded
//! by the schema's own shape) does not count against `GRAPHQL_MAX_DEPTH`;
//! nesting of introspection lists, which multiplies the answer, is bounded
//! instead. Every mainstream client's introspection query passes.
//!
//! A refusal is a GraphQL error with `extensions.code` `LIMIT_EXCEEDED` and
//! the setting that refused it (`BAD_USER_INPUT` with `fields` for a bad
//! string), answered with HTTP 400.

pub mod cost;
pub mod inputs;
pub mod tokens;

use async_graphql::{ErrorExtensionValues, Request, ServerError};

use super::order::Plan;
use crate::config::Config;

/// Brackets nested deeper than this are refused before parsing (the
/// parser is recursive); far deeper than the depth limit needs.
const MAX_NESTING: usize = 64;
/// Introspection list fields nested deeper than this are refused: the
/// standard introspection queries nest three (`types { fields { args } }`).
const MAX_INTROSPECTION_LISTS: u64 = 3;

pub const LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED";

/// The limits on one operation, from the configuration.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub max_tokens: usize,
    pub max_fields: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_depth: usize,
    pub max_directives: usize,
    pub max_list_items: usize,
}

impl QueryLimits {
    pub fn from_config(config: &Config) -> Self {
        QueryLimits {
            max_tokens: config.graphql_max_tokens,
            max_fields: config.graphql_max_fields,
            max_aliases: config.graphql_max_aliases,
            max_root_fields: config.graphql_max_root_fields,
            max_depth: config.graphql_max_depth,
            max_directives: config.graphql_max_directives,
            max_list_items: config.graphql_max_list_items,
        }
    }

    /// Check a request; on success its parsed document is attached to it
    /// (so it is not parsed twice) and the order of its response returned.
    pub fn admit(&self, request: &mut Request) -> Result<Plan, ServerError> {
        let scan = tokens::scan(&request.query, self.max_tokens, MAX_NESTING);
        match scan {
            Err(tokens::Exceeded::Tokens(max)) => {
                return Err(refusal(
                    format!("The document has more than {max} tokens"),
                    "GRAPHQL_MAX_TOKENS",
                    max as u64,
                    None,
                ));
            }
            Err(tokens::Exceeded::Nesting(max)) => {
                return Err(refusal(
                    format!("The document nests brackets more than {max} deep"),
                    "GRAPHQL_MAX_DEPTH",
                    max as u64,
                    None,
                ));
            }
            Ok(_) => {}
        }
        let document = async_graphql::parser::parse_query(&request.query)?;
        let cost = cost::measure(&document).map_err(|cycle| {
            let mut error =
                ServerError::new(format!("Fragment \"{}\" spreads itself", cycle.0), None);
            error.extensions = Some(extensions("GRAPHQL_VALIDATION_FAILED"));
            error
        })?;
        let checks = [
            (cost.fields, self.max_fields, "fields", "GRAPHQL_MAX_FIELDS"),
            (
                cost.aliases,
                self.max_aliases,
                "aliases",
                "GRAPHQL_MAX_ALIASES",
            ),
            (
                cost.root_fields,
                self.max_root_fields,
                "root fields",
                "GRAPHQL_MAX_ROOT_FIELDS",
            ),
            (
                cost.directives,
                self.max_directives,
                "directives",
                "GRAPHQL_MAX_DIRECTIVES",
            ),
            (
                cost.depth,
                self.max_depth,
                "levels of nesting",
                "GRAPHQL_MAX_DEPTH",
            ),
        ];
        for (found, max, what, setting) in checks {
            if found > max as u64 {
                return Err(refusal(
                    format!(
                        "The operation has {} {what}, at most {max} are allowed",
                        shown(found)
                    ),
                    setting,
                    max as u64,
                    Some(found),
                ));
            }
        }
        if cost.introspection_lists > MAX_INTROSPECTION_LISTS {
            return Err(refusal(
                format!(
                    "Introspection lists are nested {} deep, at most {MAX_INTROSPECTION_LISTS} are allowed",
                    cost.introspection_lists
                ),
                "introspection",
                MAX_INTROSPECTION_LISTS,
                Some(cost.introspection_lists),
            ));
        }
        inputs::check(&document, &request.variables, self.max_list_items).map_err(|problem| {
            match problem {
                inputs::Problem::List { field, items } => refusal(
                    format!(
                        "`{field}` holds {items} items, at most {} are allowed",
                        self.max_list_items
                    ),
                    "GRAPHQL_MAX_LIST_ITEMS",
                    self.max_list_items as u64,
                    Some(items as u64),
                ),
                inputs::Problem::Text { field, message } => bad_input(&field, &message),
            }
        })?;
        let plan = Plan::of(&document, request.operation_name.as_deref());
        request.set_parsed_query(document);
        Ok(plan)
    }
}

/// A count for a message: saturated sums are "more than 2^64".
fn shown(found: u64) -> String {
    if found == u64::MAX {
        "more than 18446744073709551615".to_owned()
    } else {
        found.to_string()
    }
}

fn extensions(code: &str) -> ErrorExtensionValues {
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    extensions
}

/// A refusal naming the limit.
fn refusal(message: String, setting: &str, max: u64, found: Option<u64>) -> ServerError {
    let mut error = ServerError::new(format!("Query refused: {message} ({setting})."), None);
    let mut values = extensions(LIMIT_EXCEEDED);
    values.set("limit", setting);
    values.set("max", max);
    if let Some(found) = found {
        values.set("found", found);
    }
    error.extensions = Some(values);
    error
}

/// A bad input string, named by its field (`BAD_USER_INPUT` with `fields`).
fn bad_input(field: &str, message: &str) -> ServerError {
    let mut error = ServerError::new(format!("invalid input: {field}: {message}"), None);
    let mut values = extensions("BAD_USER_INPUT");
    let mut fields = async_graphql::indexmap::IndexMap::new();
    fields.insert(
        async_graphql::Name::new(field),
        async_graphql::Value::List(vec![async_graphql::Value::String(message.to_owned())]),
    );
    values.set("fields", async_graphql::Value::Object(fields));
    error.extensions = Some(values);
    error
}

/// Was this error a refusal before execution (so HTTP answers 400)?
pub fn is_refusal(error: &ServerError) -> bool {
    error.path.is_empty()
        && error.extensions.as_ref().is_some_and(|e| {
            matches!(
                e.get("code"),
                Some(async_graphql::Value::String(code)) if code == LIMIT_EXCEEDED
                    || code == "BAD_USER_INPUT"
            )
        })
}
