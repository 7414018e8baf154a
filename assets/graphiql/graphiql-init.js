// Starts GraphiQL against this service's own `/graphql` endpoint.
// Queries and mutations go over HTTP (fetch, POST JSON); subscriptions go
// over a websocket on the same path using the `graphql-transport-ws`
// protocol (graphql-ws client). Headers typed in GraphiQL's headers editor
// are sent with every HTTP request and carried in the websocket
// `connection_init` payload (Authorization -> `authorization`,
// X-User-Id -> `userId`, any other header under its lower-cased name).
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

  // Is the operation that will run a subscription? Uses the parsed document
  // GraphiQL hands to the fetcher; falls back to a look at the query text.
  function isSubscription(params, documentAST) {
    var defs = documentAST && documentAST.definitions;
    if (defs) {
      var ops = defs.filter(function (d) { return d.kind === 'OperationDefinition'; });
      var op = params.operationName
        ? ops.filter(function (d) { return d.name && d.name.value === params.operationName; })[0]
        : ops[0];
      if (op) return op.operation === 'subscription';
    }
    var query = String(params.query || '').replace(/#[^\n\r]*/g, '');
    if (params.operationName) {
      var re = new RegExp('\\b(query|mutation|subscription)\\s+' + params.operationName + '\\b');
      var m = re.exec(query);
      if (m) return m[1] === 'subscription';
    }
    return /^\s*subscription\b/.test(query);
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
    if (isSubscription(params, opts && opts.documentAST)) return subscribe(params, headers);
    return post(params, headers);
  }

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true
    })
  );
})();
