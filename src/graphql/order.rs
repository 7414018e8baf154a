//! Response maps in the order of the selection set.
//!
//! The GraphQL specification serializes a result map in the order its
//! fields were selected (fragments expanded in place). async-graphql
//! resolves sibling fields concurrently and inserts each as it completes,
//! so the order of keys varied from run to run. A [`Plan`], the response
//! keys of the operation in document order, is built once from the
//! document (before async-graphql takes it over) and puts every object of
//! every response back in order, aliases included.

use std::collections::HashSet;

use async_graphql::{
    Name, Value,
    indexmap::IndexMap,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

/// The response keys of a selection, in order, each with its own plan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    keys: Vec<(Name, Plan)>,
}

fn collect<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    keys: &mut Vec<(&'a Name, Vec<&'a SelectionSet>)>,
    visited: &mut HashSet<&'a Name>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let key = &field.node.response_key().node;
                let child = &field.node.selection_set.node;
                match keys.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, sets)) => sets.push(child),
                    None => keys.push((key, vec![child])),
                }
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if visited.insert(name)
                    && let Some(fragment) = document.fragments.get(name)
                {
                    collect(document, &fragment.node.selection_set.node, keys, visited);
                }
            }
            Selection::InlineFragment(inline) => {
                collect(document, &inline.node.selection_set.node, keys, visited);
            }
        }
    }
}

impl Plan {
    fn build(document: &ExecutableDocument, sets: &[&SelectionSet]) -> Plan {
        let mut keys = Vec::new();
        let mut visited = HashSet::new();
        for set in sets {
            collect(document, set, &mut keys, &mut visited);
        }
        Plan {
            keys: keys
                .into_iter()
                .map(|(key, children)| (key.clone(), Plan::build(document, &children)))
                .collect(),
        }
    }

    /// The plan of the named operation of `document` (the only one when
    /// no name is given).
    pub fn of(document: &ExecutableDocument, operation: Option<&str>) -> Plan {
        let selected = match operation {
            Some(name) => document
                .operations
                .iter()
                .find(|(op_name, _)| op_name.map(|n| n.as_str()) == Some(name)),
            None => document.operations.iter().next(),
        };
        match selected {
            Some((_, operation)) => Plan::build(document, &[&operation.node.selection_set.node]),
            None => Plan::default(),
        }
    }

    /// Put `value` (and everything below it) in this plan's order.
    pub fn apply(&self, value: &mut Value) {
        match value {
            Value::Object(map) => self.apply_to_object(map),
            Value::List(items) => items.iter_mut().for_each(|item| self.apply(item)),
            _ => {}
        }
    }

    fn apply_to_object(&self, map: &mut IndexMap<Name, Value>) {
        let in_order = map.keys().eq(self
            .keys
            .iter()
            .map(|(k, _)| k)
            .filter(|k| map.contains_key(*k)));
        if !in_order {
            let mut ordered = IndexMap::with_capacity(map.len());
            for (key, _) in &self.keys {
                if let Some((name, value)) = map.shift_remove_entry(key) {
                    ordered.insert(name, value);
                }
            }
            // Keys no selection names (none are expected) keep their place after.
            ordered.extend(map.drain(..));
            *map = ordered;
        }
        for (key, plan) in &self.keys {
            if !plan.keys.is_empty()
                && let Some(value) = map.get_mut(key)
            {
                plan.apply(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;
    use serde_json::json;

    #[test]
    fn keys_follow_the_document() {
        let document = parse_query(
            "{ b: user { name id } ...F a: rooms { nodes { z y } } } fragment F on Query { c }",
        )
        .unwrap();
        let mut data = Value::from_json(json!({
            "c": 1,
            "a": {"nodes": [{"y": 1, "z": 2}, {"z": 3, "y": 4}]},
            "b": {"id": 1, "name": "x"},
        }))
        .unwrap();
        Plan::of(&document, None).apply(&mut data);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"b":{"name":"x","id":1},"c":1,"a":{"nodes":[{"z":2,"y":1},{"z":3,"y":4}]}}"#
        );
    }
}
