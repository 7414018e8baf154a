// The ecosystem's own clients against a running gateway (GATEWAY_URL):
//   1. graphql-http's auditServer: every MUST and every SHOULD;
//   2. graphql-ws's createClient over graphql-transport-ws: a subscription
//      to unreadMessages receives a message sent through the legacy REST path,
//      and roomEvents receives that message, its edit, a reaction and typing;
//   3. GraphQL Code Generator from the live endpoint, compiled by tsc --strict;
//   4. the schema file equals the live schema, as graphql-js prints both;
//   5. GraphiQL in Debian's Chromium (playwright-core), a screenshot per step.
// Exits non-zero when anything fails.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { auditServer } from 'graphql-http';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import {
  buildClientSchema,
  buildSchema,
  getIntrospectionQuery,
  lexicographicSortSchema,
  printSchema,
} from 'graphql';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const base = process.env.GATEWAY_URL || 'http://127.0.0.1:8000';
const label = process.env.SUITE_LABEL || 'default';
const shots = process.env.SCREENSHOTS || path.join(here, '..', '..', 'target', 'client-suite', label);
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const unique = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

const failures = [];
async function step(name, run) {
  const started = Date.now();
  try {
    await run();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failures.push(name);
    console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function rest(method, pathAndQuery, body) {
  const response = await fetch(`${base}${pathAndQuery}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert(response.ok, `${method} ${pathAndQuery}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/// A GraphQL operation over HTTP as a user (legacy identity); its data.
async function gql(user, query, variables) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-user-id': String(user) },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  assert(response.ok && !body.errors, `${query}: ${response.status} ${JSON.stringify(body)}`);
  return body.data;
}

/// Subscribe with graphql-ws as `user`; resolves with the first `count`
/// results once they arrived (or rejects after 15 s).
function collect(client, query, variables, count) {
  let dispose = () => {};
  const results = new Promise((resolve, reject) => {
    const seen = [];
    const timer = setTimeout(
      () => reject(new Error(`only ${seen.length} of ${count} results: ${JSON.stringify(seen)}`)),
      15_000,
    );
    dispose = client.subscribe(
      { query, variables },
      {
        next: (result) => {
          if (result.errors) {
            clearTimeout(timer);
            reject(new Error(JSON.stringify(result.errors)));
            return;
          }
          seen.push(result.data);
          if (seen.length === count) {
            clearTimeout(timer);
            resolve(seen);
          }
        },
        error: (error) => {
          clearTimeout(timer);
          reject(error instanceof Error ? error : new Error(JSON.stringify(error)));
        },
        complete: () => {},
      },
    );
  });
  return { results, dispose: () => dispose() };
}

/// A room of user_1 and user_2 through the legacy API; returns its id.
async function roomOfOneAndTwo(name) {
  const created = await rest('POST', '/chat/chatroom/', {
    room_name: `${name}-${unique}`,
    room_member: [{ username: 'user_1' }, { username: 'user_2' }],
  });
  return created.data.id;
}

await step('graphql-http audit: every MUST and SHOULD', async () => {
  const results = await auditServer({ url: `${base}/graphql` });
  const bad = results.filter((result) => result.status !== 'ok');
  for (const result of bad) {
    console.log(`     ${result.status} ${result.id} ${result.name}: ${result.reason}`);
  }
  assert(results.length > 0, 'the audit ran no check');
  assert(bad.length === 0, `${bad.length} of ${results.length} audit checks did not pass`);
});

await step('graphql-ws: unreadMessages receives a message sent over REST', async () => {
  const room = await roomOfOneAndTwo('ws');
  const text = `over graphql-ws ${unique}`;
  const client = createClient({
    url: base.replace(/^http/, 'ws') + '/graphql',
    webSocketImpl: WebSocket,
    connectionParams: { userId: 2 },
    retryAttempts: 0,
  });
  try {
    const received = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message within 15 s')), 15_000);
      const dispose = client.subscribe(
        { query: 'subscription { unreadMessages { id text sender { username } } }' },
        {
          next: (result) => {
            if (result.errors) {
              clearTimeout(timer);
              reject(new Error(JSON.stringify(result.errors)));
            } else if (result.data?.unreadMessages?.text === text) {
              clearTimeout(timer);
              dispose();
              resolve(result.data.unreadMessages);
            }
          },
          error: (error) => {
            clearTimeout(timer);
            reject(error instanceof Error ? error : new Error(JSON.stringify(error)));
          },
          complete: () => {},
        },
      );
    });
    // The subscription is set up once the server acknowledged it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await rest('POST', `/chat/group/${room}/`, { from: 1, text });
    const message = await received;
    assert(message.sender.username === 'user_1', JSON.stringify(message));
  } finally {
    await client.dispose();
  }
});

await step('graphql-ws: roomEvents receives a send, its edit, a reaction and typing', async () => {
  const room = await roomOfOneAndTwo('events');
  const client = createClient({
    url: base.replace(/^http/, 'ws') + '/graphql',
    webSocketImpl: WebSocket,
    connectionParams: { userId: 2 },
    retryAttempts: 0,
  });
  try {
    const query = `subscription($room: ID!) { roomEvents(roomId: $room) {
      __typename
      ... on MessageStoredEvent { cursor message { id text } }
      ... on MessageEditedEvent { cursor message { id text editedAt } }
      ... on ReactionChangedEvent { cursor emoji added user { username } }
      ... on TypingEvent { typing user { username } } } }`;
    const events = collect(client, query, { room }, 4);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sent = await rest('POST', `/chat/group/${room}/`, { from: 1, text: `hi ${unique}` });
    let message;
    for (let i = 0; i < 100 && !message; i += 1) {
      const state = await rest('GET', `/chat/task_state/${sent.data}`);
      message = state.state === 'SUCCESS' ? state.result : undefined;
      if (!message) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert(message, 'the send never succeeded');
    await gql(1, 'mutation($id: ID!) { editMessage(messageId: $id, text: "edited") { id } }', { id: message.id });
    await gql(2, 'mutation($id: ID!) { addReaction(messageId: $id, emoji: "🎉") { id } }', { id: message.id });
    await gql(1, 'mutation($room: ID!) { setTyping(roomId: $room) { expiresAt } }', { room });
    const seen = (await events.results).map((data) => data.roomEvents);
    events.dispose();
    const kinds = seen.map((event) => event.__typename).join(',');
    assert(
      kinds === 'MessageStoredEvent,MessageEditedEvent,ReactionChangedEvent,TypingEvent',
      `events: ${JSON.stringify(seen)}`,
    );
    assert(seen[1].message.text === 'edited' && seen[1].message.editedAt, JSON.stringify(seen[1]));
    assert(seen[2].emoji === '🎉' && seen[2].user.username === 'user_2', JSON.stringify(seen[2]));
    assert(seen[3].typing === true && seen[3].user.username === 'user_1', JSON.stringify(seen[3]));
  } finally {
    await client.dispose();
  }
});

await step('GraphQL Code Generator + tsc --noEmit --strict', async () => {
  const run = (command, args) =>
    execFileSync(command, args, {
      cwd: here,
      env: { ...process.env, GATEWAY_URL: base },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  run(path.join(here, 'node_modules', '.bin', 'graphql-codegen'), ['--config', 'codegen.mjs']);
  const generated = readFileSync(path.join(here, 'generated', 'graphql.ts'), 'utf8');
  for (const type of ['ViewerQuery', 'SendGroupMutation', 'UnreadMessagesSubscription', 'TaskUpdatedSubscription']) {
    assert(generated.includes(`export type ${type} `), `no ${type} in the generated code`);
  }
  run(path.join(here, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json']);
});

await step('schema.graphql equals the live schema (graphql-js printSchema)', async () => {
  const query = getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
    oneOf: true,
  });
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  const body = await response.json();
  assert(response.ok && !body.errors, `introspection: ${response.status} ${JSON.stringify(body.errors)}`);
  const live = printSchema(lexicographicSortSchema(buildClientSchema(body.data)));
  const file = printSchema(
    lexicographicSortSchema(buildSchema(readFileSync(path.join(here, '..', '..', 'schema.graphql'), 'utf8'))),
  );
  assert(live === file, 'schema.graphql differs from what the server introspects');
});

await step('GraphiQL in Chromium', async () => {
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page: ${error.message}`));
    page.on('requestfailed', (request) => problems.push(`request: ${request.url()} ${request.failure()?.errorText}`));
    const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`) });
    const editor = (selector) => `document.querySelector('${selector} .CodeMirror').CodeMirror`;
    const setQuery = (text) => page.evaluate(`${editor('.graphiql-query-editor')}.setValue(${JSON.stringify(text)})`);
    const result = () => page.evaluate(`${editor('.result-window')}.getValue()`);
    const waitForResult = async (needle, what) => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const text = await result().catch(() => '');
        if (text.includes(needle)) return text;
        if (Date.now() > deadline) throw new Error(`${what}: the result pane shows ${text.slice(0, 400)}`);
        await page.waitForTimeout(200);
      }
    };

    // 1. The page loads from the service alone.
    await page.goto(`${base}/graphql`, { waitUntil: 'networkidle' });
    await page.waitForSelector('.graphiql-container .graphiql-query-editor .CodeMirror');
    await shot('1-loaded');

    // 2. The Docs explorer lists Query's fields.
    await page.click('button[aria-label="Show Documentation Explorer"]');
    await page.click('.graphiql-doc-explorer a.graphiql-doc-explorer-type-name:text("Query")');
    await page.waitForSelector('.graphiql-doc-explorer-field-name:text("viewer")', { timeout: 15_000 });
    await page.waitForSelector('.graphiql-doc-explorer-field-name:text("unreadMessages")');
    await shot('2-docs');

    // 3. Typing offers completions from the schema.
    await setQuery('');
    await page.click('.graphiql-query-editor .CodeMirror');
    await page.keyboard.type('{ us');
    await page.waitForSelector('.CodeMirror-hints li:text("users")', { timeout: 15_000 });
    await shot('3-completion');
    await page.keyboard.press('Escape');

    // 4. A query runs.
    await setQuery('{ users(first: 2) { totalCount edges { node { username } } } }');
    await page.click('.graphiql-execute-button');
    await waitForResult('"totalCount"', 'the query');
    await shot('4-query');

    // 5. A subscription shows a message sent meanwhile.
    const room = await roomOfOneAndTwo('graphiql');
    const text = `seen in GraphiQL ${unique}`;
    await page.click('button:text("Headers")');
    // The tool pane holds both editors; the other one is hidden.
    await page.evaluate(() => {
      document
        .querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror')
        .CodeMirror.setValue('{"X-User-Id": "2"}');
    });
    await page.waitForTimeout(500);
    await setQuery('subscription { unreadMessages { text sender { username } } }');
    await page.waitForTimeout(500);
    await page.click('.graphiql-execute-button');
    await page.waitForTimeout(1_500);
    await rest('POST', `/chat/group/${room}/`, { from: 1, text });
    await waitForResult(text, 'the subscription');
    await shot('5-subscription');
    await page.click('.graphiql-execute-button'); // stops it

    // 6. A shared link opens with its query, and editing keeps the address
    //    in step (never with the headers).
    const shared = '{ viewer { username } }';
    await page.goto(`${base}/graphql?query=${encodeURIComponent(shared)}`, { waitUntil: 'networkidle' });
    await page.waitForSelector('.graphiql-query-editor .CodeMirror');
    const opened = await page.evaluate(`${editor('.graphiql-query-editor')}.getValue()`);
    assert(opened === shared, `the shared link opened ${JSON.stringify(opened)}`);
    await shot('6-shared-link');
    await setQuery('{ users { totalCount } }');
    await page.waitForTimeout(500);
    const address = new URL(page.url());
    assert(address.searchParams.get('query') === '{ users { totalCount } }', `the address is ${page.url()}`);
    assert(!page.url().toLowerCase().includes('x-user-id'), 'the headers went into the address');
    const icon = await page.evaluate(async () => (await fetch('/favicon.ico')).status);
    assert(icon === 200, `/favicon.ico answered ${icon}`);
  } finally {
    await browser.close();
  }
  assert(problems.length === 0, `the browser reported:\n  ${problems.join('\n  ')}`);
});

if (failures.length > 0) {
  console.log(`\n${failures.length} client check(s) failed: ${failures.join('; ')}`);
  process.exit(1);
}
console.log('\nall client checks passed');
