// GraphQL Code Generator: typed operations from the live endpoint (its
// introspection), the configuration README shows.
const endpoint = `${process.env.GATEWAY_URL || 'http://127.0.0.1:8000'}/graphql`;

export default {
  overwrite: true,
  schema: endpoint,
  documents: 'operations/*.graphql',
  generates: {
    'generated/graphql.ts': {
      plugins: ['typescript', 'typescript-operations'],
      config: { scalars: { DateTime: 'string' } },
    },
  },
};
