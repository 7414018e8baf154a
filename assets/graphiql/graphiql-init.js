// Starts GraphiQL against this service's own `/graphql` endpoint.
// Queries and mutations go over HTTP (fetch, POST JSON); subscriptions go
// over a websocket on the same path using the `graphql-transport-ws`
// protocol (graphql-ws client). Headers typed in GraphiQL's headers editor
// are sent with every HTTP request and carried in the websocket
// `connection_init` payload (Authorization -> `authorization`,
// X-User-Id -> `userId`, any other header under its lower-cased name).
// The page's address follows the editors: `query`, `variables` and
// `operationName` in the query string, so a copied address opens the same
// tab; the headers (they may hold a token) never go there.
// Everything is served locally from /graphiql/; nothing is loaded from a CDN.
(function () {
  'use strict';

  var loc = window.location;
  var httpUrl = loc.protocol + '//' + loc.host + '/graphql';
  var wsUrl = (loc.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + loc.host + '/graphql';

  function showFatal(message) {
    var root = document.getElementById('graphiql');
    root.textContent = message;
    root.setAttribute('style', 'padding:2em;font-family:sans-serif;color:#b00');
  }

  if (!window.React || !window.ReactDOM || !window.GraphiQL || !window.graphqlWs) {
    showFatal('GraphiQL assets failed to load from /graphiql/.');
    return;
  }

  // Is the operation that will run a subscription? Read from the text that
  // is sent (GraphiQL's parsed document can lag behind an edit): comments
  // and strings out, then the operations at the top level, in order.
  function operationsOf(query) {
    var text = String(query || '')
      .replace(/"""[\s\S]*?"""/g, '""')
      .replace(/"(?:[^"\\\n]|\\.)*"/g, '""')
      .replace(/#[^\n\r]*/g, '');
    var operations = [];
    var depth = 0;
    // An operation keyword was read; its selection set is not an operation.
    var pending = false;
    var re = /[{}]|\b(query|mutation|subscription|fragment)\b\s*([_A-Za-z][_0-9A-Za-z]*)?/g;
    var m;
    while ((m = re.exec(text))) {
      if (m[0] === '{') {
        if (depth === 0 && !pending) operations.push({ type: 'query', name: null });
        pending = false;
        depth += 1;
      } else if (m[0] === '}') {
        depth = Math.max(0, depth - 1);
      } else if (depth === 0) {
        if (m[1] !== 'fragment') operations.push({ type: m[1], name: m[2] || null });
        pending = true;
      }
    }
    return operations;
  }

  function isSubscription(params) {
    var operations = operationsOf(params.query);
    var chosen = params.operationName
      ? operations.filter(function (op) { return op.name === params.operationName; })[0]
      : operations[0];
    return Boolean(chosen) && chosen.type === 'subscription';
  }

  // The connection_init payload built from the headers editor.
  function connectionParams(headers) {
    var payload = {};
    Object.keys(headers || {}).forEach(function (name) {
      var value = headers[name];
      var key = name.toLowerCase();
      if (key === 'x-user-id') {
        var s = String(value).trim();
        payload.userId = /^-?\d+$/.test(s) ? Number(s) : value;
      } else {
        payload[key] = value;
      }
    });
    return payload;
  }

  // One lazy graphql-ws client per distinct set of headers: a new client
  // (new connection_init) is made when the headers change. A lazy client
  // only holds a socket while it has running subscriptions, so an old one
  // closes by itself once its subscriptions end.
  var ws = { key: null, client: null };
  function wsClient(headers) {
    var params = connectionParams(headers);
    var key = JSON.stringify(params);
    if (!ws.client || ws.key !== key) {
      ws.key = key;
      ws.client = window.graphqlWs.createClient({
        url: wsUrl,
        lazy: true,
        connectionParams: params,
        retryAttempts: 3
      });
    }
    return ws.client;
  }

  // A readable message for a websocket failure.
  function subscriptionError(err) {
    if (err instanceof Error) return err.message;
    if (err && typeof err.code === 'number') {
      return 'WebSocket closed (code ' + err.code + (err.reason ? ': ' + err.reason : '') + ')';
    }
    if (err && err.type === 'error') return 'WebSocket error: could not connect to ' + wsUrl;
    return String(err);
  }

  function subscribe(params, headers) {
    // An Observable, as GraphiQL accepts one from a fetcher.
    return {
      subscribe: function (observer) {
        var dispose = wsClient(headers).subscribe(
          {
            query: params.query,
            variables: params.variables,
            operationName: params.operationName,
            extensions: params.extensions
          },
          {
            next: function (value) { observer.next(value); },
            error: function (err) {
              // Shown in the result pane like a GraphQL error response:
              // an array is the GraphQL errors of an `error` message; anything
              // else is a socket failure or close.
              var errors = Array.isArray(err) ? err : [{ message: subscriptionError(err) }];
              observer.next({ errors: errors });
              observer.complete();
            },
            complete: function () { observer.complete(); }
          }
        );
        return { unsubscribe: dispose };
      }
    };
  }

  function post(params, headers) {
    var all = {
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json, application/json'
    };
    Object.keys(headers || {}).forEach(function (k) { all[k] = String(headers[k]); });
    return fetch(httpUrl, {
      method: 'POST',
      headers: all,
      body: JSON.stringify(params),
      credentials: 'same-origin'
    }).then(function (res) {
      return res.text().then(function (text) {
        try {
          return JSON.parse(text);
        } catch (e) {
          return {
            errors: [{ message: 'HTTP ' + res.status + ' ' + res.statusText + ': ' + text.slice(0, 500) }]
          };
        }
      });
    });
  }

  function fetcher(params, opts) {
    var headers = (opts && opts.headers) || {};
    if (isSubscription(params)) return subscribe(params, headers);
    return post(params, headers);
  }

  // The shareable part of the tab, from the address and back.
  var shared = {};
  var search = new URLSearchParams(loc.search);
  ['query', 'variables', 'operationName'].forEach(function (name) {
    if (search.has(name)) shared[name] = search.get(name);
  });

  function rewriteAddress() {
    var params = new URLSearchParams();
    Object.keys(shared).forEach(function (name) {
      if (shared[name]) params.set(name, shared[name]);
    });
    var text = params.toString();
    window.history.replaceState(null, '', loc.pathname + (text ? '?' + text : '') + loc.hash);
  }

  function keep(name) {
    return function (value) {
      shared[name] = value;
      rewriteAddress();
    };
  }

  var props = {
    fetcher: fetcher,
    defaultEditorToolsVisibility: true,
    onEditQuery: keep('query'),
    onEditVariables: keep('variables'),
    onEditOperationName: keep('operationName')
  };
  // A shared link wins over what the browser remembers of earlier visits.
  if (shared.query !== undefined) props.query = shared.query;
  if (shared.variables !== undefined) props.variables = shared.variables;
  if (shared.operationName !== undefined) props.operationName = shared.operationName;

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, props));
})();
