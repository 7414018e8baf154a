//! Response maps in the order of the selection set.
//!
//! The GraphQL specification serializes a result map in the order its
//! fields were selected (fragments expanded in place). async-graphql
//! resolves sibling fields concurrently and inserts each as it completes,
//! so the order of keys varied from run to run. This pass puts every object
//! of a response back into document order, aliases included.

use std::collections::HashSet;

use async_graphql::{
    Name, Value,
    indexmap::IndexMap,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

/// Response keys in order, each with the selection sets of its fields.
type Plan<'a> = Vec<(&'a str, Vec<&'a SelectionSet>)>;

fn collect<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    plan: &mut Plan<'a>,
    visited: &mut HashSet<&'a Name>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let key = field.node.response_key().node.as_str();
                let child = &field.node.selection_set.node;
                match plan.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, sets)) => sets.push(child),
                    None => plan.push((key, vec![child])),
                }
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if visited.insert(name)
                    && let Some(fragment) = document.fragments.get(name)
                {
                    collect(document, &fragment.node.selection_set.node, plan, visited);
                }
            }
            Selection::InlineFragment(inline) => {
                collect(document, &inline.node.selection_set.node, plan, visited);
            }
        }
    }
}

fn plan<'a>(document: &'a ExecutableDocument, sets: &[&'a SelectionSet]) -> Plan<'a> {
    let mut plan = Vec::new();
    let mut visited = HashSet::new();
    for set in sets {
        collect(document, set, &mut plan, &mut visited);
    }
    plan
}

fn reorder_value(document: &ExecutableDocument, value: &mut Value, sets: &[&SelectionSet]) {
    match value {
        Value::Object(map) => {
            let plan = plan(document, sets);
            reorder_object(document, map, &plan);
        }
        Value::List(items) => {
            let plan = plan(document, sets);
            for item in items {
                match item {
                    Value::Object(map) => reorder_object(document, map, &plan),
                    Value::List(_) => reorder_value(document, item, sets),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn reorder_object(document: &ExecutableDocument, map: &mut IndexMap<Name, Value>, plan: &Plan) {
    let in_order = map.keys().map(Name::as_str).eq(plan
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| map.contains_key(*k)));
    if !in_order {
        let mut ordered = IndexMap::with_capacity(map.len());
        for (key, _) in plan {
            if let Some((name, value)) = map.shift_remove_entry(*key) {
                ordered.insert(name, value);
            }
        }
        // Keys no selection names (none are expected) keep their place after.
        ordered.extend(map.drain(..));
        *map = ordered;
    }
    for (key, sets) in plan {
        if let Some(value) = map.get_mut(*key) {
            reorder_value(document, value, sets);
        }
    }
}

/// Put `data`, the result of the named operation of `document`, in
/// selection-set order at every level.
pub fn reorder(data: &mut Value, document: &ExecutableDocument, operation: Option<&str>) {
    let selected = match operation {
        Some(name) => document
            .operations
            .iter()
            .find(|(op_name, _)| op_name.map(|n| n.as_str()) == Some(name)),
        None => document.operations.iter().next(),
    };
    if let Some((_, operation)) = selected {
        reorder_value(document, data, &[&operation.node.selection_set.node]);
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
        reorder(&mut data, &document, None);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"b":{"name":"x","id":1},"c":1,"a":{"nodes":[{"z":2,"y":1},{"z":3,"y":4}]}}"#
        );
    }
}
