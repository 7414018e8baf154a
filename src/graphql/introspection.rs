//! Refuse introspection clearly when it is turned off.
//!
//! async-graphql's own switch answers `__schema` with a silent `null`; a
//! client (or a codegen tool) deserves to be told why instead.

use std::sync::Arc;

use async_graphql::{
    ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

pub struct RefuseIntrospection;

impl ExtensionFactory for RefuseIntrospection {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RefuseIntrospectionExtension)
    }
}

struct RefuseIntrospectionExtension;

fn selects_introspection(set: &SelectionSet) -> bool {
    set.items.iter().any(|item| match &item.node {
        Selection::Field(field) => {
            let name = field.node.name.node.as_str();
            name == "__schema"
                || name == "__type"
                || selects_introspection(&field.node.selection_set.node)
        }
        Selection::InlineFragment(fragment) => {
            selects_introspection(&fragment.node.selection_set.node)
        }
        Selection::FragmentSpread(_) => false,
    })
}

fn uses_introspection(document: &ExecutableDocument) -> bool {
    document
        .operations
        .iter()
        .any(|(_, op)| selects_introspection(&op.node.selection_set.node))
        || document
            .fragments
            .values()
            .any(|fragment| selects_introspection(&fragment.node.selection_set.node))
}

#[async_trait::async_trait]
impl Extension for RefuseIntrospectionExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if uses_introspection(&document) {
            let mut error = ServerError::new("Introspection is disabled on this server", None);
            let mut extensions = async_graphql::ErrorExtensionValues::default();
            extensions.set("code", "FORBIDDEN");
            error.extensions = Some(extensions);
            return Err(error);
        }
        Ok(document)
    }
}
