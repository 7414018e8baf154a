//! `schema.graphql` against the schema as a client sees it through
//! introspection: the same types, fields, arguments, enum values,
//! descriptions and scalar specifications. (The client suite also compares
//! them with graphql-js's own printer.)

use std::collections::BTreeMap;

use async_graphql::parser::{
    parse_schema,
    types::{TypeKind, TypeSystemDefinition},
};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const INTROSPECTION: &str = "query {
  __schema { description types {
    kind name description specifiedByURL
    fields(includeDeprecated: true) { name description args { name description type { ...T } defaultValue } type { ...T } }
    inputFields { name description type { ...T } defaultValue }
    enumValues(includeDeprecated: true) { name description }
    possibleTypes { name } interfaces { name }
  } } }
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }";

/// A type reference as SDL writes it (`[User!]!`).
fn type_ref(value: &Value) -> String {
    match value["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_ref(&value["ofType"])),
        Some("LIST") => format!("[{}]", type_ref(&value["ofType"])),
        _ => value["name"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Type name -> the lines describing it, from live introspection.
fn live(schema: &Value) -> BTreeMap<String, Vec<String>> {
    let mut types = BTreeMap::new();
    for t in schema["types"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        // Introspection's own types and the built-in scalars are not printed.
        if name.starts_with("__") || ["Boolean", "Float", "ID", "Int", "String"].contains(&name) {
            continue;
        }
        let mut lines = vec![format!(
            "{} {:?} {:?}",
            t["kind"].as_str().unwrap(),
            t["description"].as_str(),
            t["specifiedByURL"].as_str()
        )];
        for field in t["fields"].as_array().into_iter().flatten() {
            let args: Vec<String> = field["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| format!("{}: {}", a["name"].as_str().unwrap(), type_ref(&a["type"])))
                .collect();
            lines.push(format!(
                "field {}({}): {} {:?}",
                field["name"].as_str().unwrap(),
                args.join(", "),
                type_ref(&field["type"]),
                field["description"].as_str()
            ));
        }
        for field in t["inputFields"].as_array().into_iter().flatten() {
            lines.push(format!(
                "input {}: {} {:?}",
                field["name"].as_str().unwrap(),
                type_ref(&field["type"]),
                field["description"].as_str()
            ));
        }
        for value in t["enumValues"].as_array().into_iter().flatten() {
            lines.push(format!("value {}", value["name"].as_str().unwrap()));
        }
        let mut members: Vec<&str> = t["possibleTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        members.sort_unstable();
        if !members.is_empty() {
            lines.push(format!("members {}", members.join(" | ")));
        }
        types.insert(name.to_owned(), lines);
    }
    types
}

fn sdl_type(ty: &async_graphql::parser::types::Type) -> String {
    ty.to_string()
}

/// The SDL without its directive definitions and the schema's description
/// (async-graphql's parser takes neither; the types are what is compared).
fn without_directives(sdl: &str) -> String {
    let mut kept = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    let mut in_description = false;
    for line in sdl.lines() {
        if in_description || line.starts_with("\"\"\"") {
            pending.push(line);
            let quotes = line.matches("\"\"\"").count();
            in_description = if in_description {
                quotes == 0
            } else {
                quotes == 1
            };
            continue;
        }
        if line.starts_with("directive ") {
            pending.clear();
            continue;
        }
        if line.starts_with("schema {") {
            // Nor on the schema definition.
            pending.clear();
        }
        kept.append(&mut pending);
        kept.push(line);
    }
    kept.append(&mut pending);
    kept.join("\n")
}

/// The same, from the SDL file.
fn file(sdl: &str) -> BTreeMap<String, Vec<String>> {
    let document = parse_schema(without_directives(sdl)).expect("schema.graphql parses");
    let mut types = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(t) = definition else {
            continue;
        };
        let t = t.node;
        let description = t.description.as_ref().map(|d| d.node.as_str());
        let specified_by = t.directives.iter().find_map(|d| {
            (d.node.name.node == "specifiedBy").then(|| {
                d.node
                    .get_argument("url")
                    .map(|v| v.node.to_string().trim_matches('"').to_owned())
            })?
        });
        let kind = match &t.kind {
            TypeKind::Scalar => "SCALAR",
            TypeKind::Object(_) => "OBJECT",
            TypeKind::Interface(_) => "INTERFACE",
            TypeKind::Union(_) => "UNION",
            TypeKind::Enum(_) => "ENUM",
            TypeKind::InputObject(_) => "INPUT_OBJECT",
        };
        let mut lines = vec![format!(
            "{kind} {description:?} {:?}",
            specified_by.as_deref()
        )];
        match &t.kind {
            TypeKind::Object(object) => {
                for field in &object.fields {
                    let field = &field.node;
                    let args: Vec<String> = field
                        .arguments
                        .iter()
                        .map(|a| format!("{}: {}", a.node.name.node, sdl_type(&a.node.ty.node)))
                        .collect();
                    lines.push(format!(
                        "field {}({}): {} {:?}",
                        field.name.node,
                        args.join(", "),
                        sdl_type(&field.ty.node),
                        field.description.as_ref().map(|d| d.node.as_str())
                    ));
                }
            }
            TypeKind::InputObject(input) => {
                for field in &input.fields {
                    let field = &field.node;
                    lines.push(format!(
                        "input {}: {} {:?}",
                        field.name.node,
                        sdl_type(&field.ty.node),
                        field.description.as_ref().map(|d| d.node.as_str())
                    ));
                }
            }
            TypeKind::Enum(values) => {
                for value in &values.values {
                    lines.push(format!("value {}", value.node.value.node));
                }
            }
            TypeKind::Union(union) => {
                let mut members: Vec<&str> =
                    union.members.iter().map(|m| m.node.as_str()).collect();
                members.sort_unstable();
                lines.push(format!("members {}", members.join(" | ")));
            }
            _ => {}
        }
        types.insert(t.name.node.to_string(), lines);
    }
    types
}

async fn the_file_is_what_clients_introspect(app: TestApp) {
    let data = app.ok(INTROSPECTION, json!({})).await;
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    let live = live(&data["__schema"]);
    let file = file(&committed);
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        file.keys().collect::<Vec<_>>(),
        "the same types"
    );
    for (name, lines) in &live {
        assert_eq!(lines, &file[name], "type {name}");
    }
    // The schema's own description, as introspection gives it.
    let description = data["__schema"]["description"].as_str().unwrap();
    assert!(committed.contains(description));
}

crate::scenarios!(the_file_is_what_clients_introspect);
