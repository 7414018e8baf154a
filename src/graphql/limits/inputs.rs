//! Input values of an operation, checked before it runs: every string in
//! the variables and in the document's arguments passes [`crate::input`],
//! and no list holds more than the configured number of items.
//!
//! Fragments are checked once each, as written: input size does not grow
//! with spreads.

use async_graphql::{
    Value as ConstValue, Variables,
    parser::types::{Directive, ExecutableDocument, Selection, SelectionSet},
};
use async_graphql_value::Value;

/// What is wrong with an input value, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A string breaks the rules of [`crate::input`].
    Text { field: String, message: String },
    /// A list holds more items than allowed.
    List { field: String, items: usize },
}

struct Check {
    max_items: usize,
}

impl Check {
    fn text(&self, path: &str, text: &str) -> Result<(), Problem> {
        match crate::input::problem(text) {
            Some(message) => Err(Problem::Text {
                field: path.to_owned(),
                message,
            }),
            None => Ok(()),
        }
    }

    fn list(&self, path: &str, items: usize) -> Result<(), Problem> {
        if items > self.max_items {
            return Err(Problem::List {
                field: path.to_owned(),
                items,
            });
        }
        Ok(())
    }

    fn constant(&self, path: &str, value: &ConstValue) -> Result<(), Problem> {
        match value {
            ConstValue::String(text) => self.text(path, text),
            ConstValue::Enum(name) => self.text(path, name),
            ConstValue::List(items) => {
                self.list(path, items.len())?;
                for (index, item) in items.iter().enumerate() {
                    self.constant(&format!("{path}[{index}]"), item)?;
                }
                Ok(())
            }
            ConstValue::Object(fields) => {
                for (name, item) in fields {
                    self.text(path, name)?;
                    self.constant(&format!("{path}.{name}"), item)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn literal(&self, path: &str, value: &Value) -> Result<(), Problem> {
        match value {
            Value::String(text) => self.text(path, text),
            Value::List(items) => {
                self.list(path, items.len())?;
                for (index, item) in items.iter().enumerate() {
                    self.literal(&format!("{path}[{index}]"), item)?;
                }
                Ok(())
            }
            Value::Object(fields) => {
                for (name, item) in fields {
                    self.literal(&format!("{path}.{name}"), item)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn directives(
        &self,
        directives: &[async_graphql::Positioned<Directive>],
    ) -> Result<(), Problem> {
        for directive in directives {
            for (name, value) in &directive.node.arguments {
                self.literal(&name.node, &value.node)?;
            }
        }
        Ok(())
    }

    fn selection_set(&self, set: &SelectionSet) -> Result<(), Problem> {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    for (name, value) in &field.arguments {
                        self.literal(&name.node, &value.node)?;
                    }
                    self.directives(&field.directives)?;
                    self.selection_set(&field.selection_set.node)?;
                }
                Selection::FragmentSpread(spread) => self.directives(&spread.node.directives)?,
                Selection::InlineFragment(inline) => {
                    self.directives(&inline.node.directives)?;
                    self.selection_set(&inline.node.selection_set.node)?;
                }
            }
        }
        Ok(())
    }
}

/// Check the variables and every argument written in the document.
pub fn check(
    document: &ExecutableDocument,
    variables: &Variables,
    max_items: usize,
) -> Result<(), Problem> {
    let check = Check { max_items };
    for (name, value) in variables.iter() {
        check.text(name, name)?;
        check.constant(name, value)?;
    }
    for (_, operation) in document.operations.iter() {
        let operation = &operation.node;
        for definition in &operation.variable_definitions {
            if let Some(default) = &definition.node.default_value {
                check.constant(&definition.node.name.node, &default.node)?;
            }
        }
        check.directives(&operation.directives)?;
        check.selection_set(&operation.selection_set.node)?;
    }
    for fragment in document.fragments.values() {
        check.directives(&fragment.node.directives)?;
        check.selection_set(&fragment.node.selection_set.node)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;
    use serde_json::json;

    fn run(query: &str, variables: serde_json::Value) -> Result<(), Problem> {
        check(
            &parse_query(query).unwrap(),
            &Variables::from_json(variables),
            3,
        )
    }

    #[test]
    fn strings_and_lists_are_checked_where_they_are() {
        assert!(run("{ user(id: 1) { id } }", json!({})).is_ok());
        assert_eq!(
            run(
                r#"{ users(filter: {username: "a\u0000b"}) { totalCount } }"#,
                json!({})
            ),
            Err(Problem::Text {
                field: "filter.username".into(),
                message: crate::input::problem("\0").unwrap(),
            })
        );
        assert!(matches!(
            run("mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                json!({"i": {"username": "x\u{0}"}})),
            Err(Problem::Text { field, .. }) if field == "i.username"
        ));
        assert!(matches!(
            run(r#"mutation { createRoom(name: "r", memberUsernames: ["a", "b", "c", "d"]) { id } }"#, json!({})),
            Err(Problem::List { field, items: 4 }) if field == "memberUsernames"
        ));
        assert!(matches!(
            run(
                "query($m: [String!]) { a }",
                json!({"m": ["a", "b", "c", "d", "e"]})
            ),
            Err(Problem::List { items: 5, .. })
        ));
        assert!(
            run(
                "fragment F on Query { a(x: \"\\u0000\") } { ...F }",
                json!({})
            )
            .is_err()
        );
    }
}
