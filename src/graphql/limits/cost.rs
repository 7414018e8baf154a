//! The size of an operation after fragment expansion, computed without
//! expanding anything.
//!
//! Each fragment is measured once and its measure reused at every spread,
//! so a document whose fragments spread each other twice over (2^30 fields
//! from 1.6 KB) costs one pass over the text, not 2^30 steps. Sums saturate
//! instead of overflowing. A fragment that spreads itself, directly or not,
//! is refused here (expanding it would never end).

use std::collections::HashMap;

use async_graphql::{
    Name,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

/// Fields that open an introspection subtree: its shape is bounded by the
/// schema, so its depth does not count against the data depth limit.
const INTROSPECTION_ROOTS: [&str; 2] = ["__schema", "__type"];
/// Introspection fields that return lists. Nesting them (a type's fields'
/// types' fields ...) multiplies the answer, so their nesting is bounded.
const INTROSPECTION_LISTS: [&str; 8] = [
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
];

/// The measure of a selection set (or of a whole document).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Fields, every spread expanded.
    pub fields: u64,
    /// Aliased fields, every spread expanded.
    pub aliases: u64,
    /// Directives on fields, spreads, fragments and operations.
    pub directives: u64,
    /// Fields at the top level of the selection set (of an operation: its
    /// root fields).
    pub root_fields: u64,
    /// The deepest nesting of fields outside introspection.
    pub depth: u64,
    /// The deepest nesting of introspection list fields.
    pub introspection_lists: u64,
}

impl Cost {
    /// Fold in a spread (or inline) fragment's measure.
    fn absorb(&mut self, other: Cost) {
        self.fields = self.fields.saturating_add(other.fields);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.directives = self.directives.saturating_add(other.directives);
        self.root_fields = self.root_fields.saturating_add(other.root_fields);
        self.depth = self.depth.max(other.depth);
        self.introspection_lists = self.introspection_lists.max(other.introspection_lists);
    }
}

/// A fragment that spreads itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Name);

enum Memo {
    InProgress,
    Done(Cost),
}

struct Measure<'a> {
    document: &'a ExecutableDocument,
    fragments: HashMap<&'a Name, Memo>,
}

impl<'a> Measure<'a> {
    fn fragment(&mut self, name: &'a Name) -> Result<Cost, Cycle> {
        match self.fragments.get(name) {
            Some(Memo::Done(cost)) => return Ok(*cost),
            Some(Memo::InProgress) => return Err(Cycle(name.clone())),
            None => {}
        }
        // An unknown fragment is validation's to report; it costs nothing.
        let Some(definition) = self.document.fragments.get(name) else {
            return Ok(Cost::default());
        };
        self.fragments.insert(name, Memo::InProgress);
        let inside = definition
            .node
            .type_condition
            .node
            .on
            .node
            .starts_with("__");
        let mut cost = self.selection_set(&definition.node.selection_set.node, inside)?;
        cost.directives = cost
            .directives
            .saturating_add(definition.node.directives.len() as u64);
        self.fragments.insert(name, Memo::Done(cost));
        Ok(cost)
    }

    /// `inside`: the set belongs to an introspection subtree.
    fn selection_set(&mut self, set: &'a SelectionSet, inside: bool) -> Result<Cost, Cycle> {
        let mut cost = Cost::default();
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    let opens = !inside && INTROSPECTION_ROOTS.contains(&name);
                    let child = self.selection_set(&field.selection_set.node, inside || opens)?;
                    cost.fields = cost.fields.saturating_add(1).saturating_add(child.fields);
                    cost.aliases = cost
                        .aliases
                        .saturating_add(u64::from(field.alias.is_some()))
                        .saturating_add(child.aliases);
                    cost.directives = cost
                        .directives
                        .saturating_add(field.directives.len() as u64)
                        .saturating_add(child.directives);
                    cost.root_fields = cost.root_fields.saturating_add(1);
                    let depth = match (inside, opens) {
                        (true, _) => 0,
                        (false, true) => 1,
                        (false, false) => child.depth.saturating_add(1),
                    };
                    cost.depth = cost.depth.max(depth);
                    let lists = u64::from(inside && INTROSPECTION_LISTS.contains(&name))
                        .saturating_add(child.introspection_lists);
                    cost.introspection_lists = cost.introspection_lists.max(lists);
                }
                Selection::FragmentSpread(spread) => {
                    let mut fragment = self.fragment(&spread.node.fragment_name.node)?;
                    fragment.directives = fragment
                        .directives
                        .saturating_add(spread.node.directives.len() as u64);
                    cost.absorb(fragment);
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    let on_introspection = inline
                        .type_condition
                        .as_ref()
                        .is_some_and(|t| t.node.on.node.starts_with("__"));
                    let mut fragment =
                        self.selection_set(&inline.selection_set.node, inside || on_introspection)?;
                    fragment.directives = fragment
                        .directives
                        .saturating_add(inline.directives.len() as u64);
                    cost.absorb(fragment);
                }
            }
        }
        Ok(cost)
    }
}

/// The measure of every operation of the document together: fields,
/// aliases and directives summed (validation walks them all), root fields,
/// depth and introspection nesting of the largest.
pub fn measure(document: &ExecutableDocument) -> Result<Cost, Cycle> {
    let mut measure = Measure {
        document,
        fragments: HashMap::new(),
    };
    let mut total = Cost::default();
    for (_, operation) in document.operations.iter() {
        let mut cost = measure.selection_set(&operation.node.selection_set.node, false)?;
        cost.directives = cost
            .directives
            .saturating_add(operation.node.directives.len() as u64);
        total.fields = total.fields.saturating_add(cost.fields);
        total.aliases = total.aliases.saturating_add(cost.aliases);
        total.directives = total.directives.saturating_add(cost.directives);
        total.root_fields = total.root_fields.max(cost.root_fields);
        total.depth = total.depth.max(cost.depth);
        total.introspection_lists = total.introspection_lists.max(cost.introspection_lists);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn cost(query: &str) -> Cost {
        measure(&parse_query(query).unwrap()).unwrap()
    }

    /// `fragment f1 on Query { ...f0 ...f0 } ... query { ...fN }`.
    fn fan_out(levels: usize) -> String {
        let mut doc = String::from("fragment f0 on Query { __typename }\n");
        for level in 1..=levels {
            let previous = level - 1;
            doc.push_str(&format!(
                "fragment f{level} on Query {{ ...f{previous} ...f{previous} }}\n"
            ));
        }
        doc.push_str(&format!("query {{ ...f{levels} }}"));
        doc
    }

    #[test]
    fn fragments_are_measured_once_per_definition() {
        let started = std::time::Instant::now();
        let measured = cost(&fan_out(30));
        assert_eq!(measured.fields, 1 << 30);
        assert_eq!(measured.root_fields, 1 << 30);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Far past u64: saturates instead of overflowing.
        assert_eq!(cost(&fan_out(80)).fields, u64::MAX);
    }

    #[test]
    fn counts_fields_aliases_roots_and_depth() {
        let measured =
            cost("{ a: viewer { id rooms { name } } b: user(id: 1) @skip(if: false) { id } }");
        assert_eq!(measured.fields, 6);
        assert_eq!(measured.aliases, 2);
        assert_eq!(measured.directives, 1);
        assert_eq!(measured.root_fields, 2);
        assert_eq!(measured.depth, 3);
    }

    #[test]
    fn introspection_depth_is_counted_apart() {
        let measured = cost(
            "{ viewer { id } __schema { types { fields { type { ofType { ofType { name } } } } } } }",
        );
        assert_eq!(measured.depth, 2);
        assert_eq!(measured.introspection_lists, 2);
        let nested = cost_of_lists(
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
        );
        assert_eq!(nested, 4);
    }

    fn cost_of_lists(query: &str) -> u64 {
        cost(query).introspection_lists
    }

    #[test]
    fn cycles_are_refused() {
        let document =
            parse_query("{ ...a } fragment a on Query { ...b } fragment b on Query { ...a }")
                .unwrap();
        assert!(measure(&document).is_err());
    }
}
