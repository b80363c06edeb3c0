// Unit tests of confab.js (the client library) against a scripted fake WebSocket: reconnect
// with backoff, resume with `since` and no duplicate events, the outbox retried until acked,
// dead-socket detection, and a refused token. No browser, no server.

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import { ConfabClient, backoffDelay } from "../public/confab.js";

class FakeSocket {
  static OPEN = 1;
  static all = [];

  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close(code) {
    this.closed = code ?? 1000;
    this.readyState = 3;
  }

  /** The server accepts the connection and greets. */
  accept(user = "alice") {
    this.readyState = 1;
    this.push({ type: "welcome", user, tenant: "t", session: "s1", heartbeat_ms: 25000, limits: {} });
  }

  push(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The connection drops. */
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code });
  }

  sentOf(type) {
    return this.sent.filter((f) => f.type === type);
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
const latest = () => FakeSocket.all[FakeSocket.all.length - 1];

async function waitFor(check, what) {
  for (let i = 0; i < 200; i += 1) {
    if (check()) return;
    await tick(5);
  }
  throw new Error(`timed out waiting for ${what}`);
}

let client;

beforeEach(() => {
  FakeSocket.all = [];
  globalThis.WebSocket = FakeSocket;
});

afterEach(() => {
  client?.close();
  client = null;
});

function newClient(options = {}) {
  client = new ConfabClient({
    baseUrl: "http://127.0.0.1:9",
    token: "tok",
    initialBackoffMs: 10,
    maxBackoffMs: 40,
    ...options,
  });
  const statuses = [];
  client.on("status", ({ status }) => statuses.push(status));
  client.connect();
  return statuses;
}

test("backoff doubles up to its cap, with jitter in the upper half", () => {
  for (let attempt = 0; attempt < 12; attempt += 1) {
    const cap = Math.min(30_000, 500 * 2 ** attempt);
    assert.equal(backoffDelay(attempt, 500, 30_000, () => 0), cap / 2);
    assert.equal(backoffDelay(attempt, 500, 30_000, () => 1), cap);
  }
});

test("connects with ?token=, resumes joined conversations with since, and drops replays", async () => {
  const statuses = newClient();
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  const first = latest();
  assert.equal(first.url.pathname, "/v1/ws");
  assert.equal(first.url.searchParams.get("token"), "tok");
  first.accept();
  assert.equal(client.status, "online");

  const joined = client.join("c1");
  assert.deepEqual(first.sentOf("join").map((f) => [f.conversation, f.since]), [["c1", undefined]]);
  first.push({ type: "joined", ref: first.sentOf("join")[0].ref, conversation: "c1", last_seq: 4, recovered: true });
  assert.equal((await joined).last_seq, 4);

  const seen = [];
  client.on("message", (m) => seen.push(m.seq));
  first.push({ type: "message", conversation: "c1", id: "m5", seq: 5, author: "bob", body: "a", ts: 1, client_msg_id: "x" });
  first.drop();
  assert.equal(client.status, "reconnecting");

  await waitFor(() => FakeSocket.all.length === 2, "a reconnect");
  const second = latest();
  second.accept();
  const rejoin = second.sentOf("join")[0];
  assert.deepEqual([rejoin.conversation, rejoin.since], ["c1", 5]);
  second.push({ type: "joined", ref: rejoin.ref, conversation: "c1", last_seq: 6, recovered: true });
  // A replay overlapping what was seen is filtered; the new event gets through once.
  for (const seq of [5, 6, 6]) {
    second.push({ type: "message", conversation: "c1", id: `m${seq}`, seq, author: "bob", body: "b", ts: 1, client_msg_id: `x${seq}` });
  }
  assert.deepEqual(seen, [5, 6]);
  assert.equal(client.lastSeq("c1"), 6);
  assert.deepEqual(statuses.slice(0, 4), ["connecting", "online", "reconnecting", "reconnecting"]);
  assert.equal(statuses.at(-1), "online");
});

test("a send is retried with the same client_msg_id until acknowledged", async () => {
  newClient();
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  latest().accept();
  const { clientMsgId, acked } = client.send("c1", "hello", { replyTo: "m1" });
  const firstTry = latest().sentOf("send")[0];
  assert.equal(firstTry.client_msg_id, clientMsgId);
  assert.equal(firstTry.reply_to, "m1");
  assert.equal(client.unacked().length, 1);

  latest().drop();
  await waitFor(() => FakeSocket.all.length === 2, "a reconnect");
  latest().accept();
  const retry = latest().sentOf("send")[0];
  assert.equal(retry.client_msg_id, clientMsgId);
  latest().push({ type: "ack", ref: retry.ref, conversation: "c1", client_msg_id: clientMsgId, id: "m9", seq: 9, ts: 1, duplicate: true });
  assert.equal((await acked).id, "m9");
  assert.equal(client.unacked().length, 0);
});

test("a send the server refuses is rejected; a rate-limited one is retried", async () => {
  newClient();
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  const socket = latest();
  socket.accept();
  const refused = client.send("c1", "x".repeat(10));
  const failures = [];
  client.on("send_failed", (f) => failures.push(f.error.code));
  socket.push({ type: "error", ref: socket.sentOf("send")[0].ref, code: "not_member", message: "no" });
  await assert.rejects(refused.acked, { code: "not_member" });
  assert.deepEqual(failures, ["not_member"]);

  const limited = client.send("c1", "later");
  socket.push({ type: "error", ref: socket.sentOf("send")[1].ref, code: "rate_limited", message: "slow" });
  assert.equal(client.unacked().length, 1, "kept for a retry");
  limited.acked.catch(() => {});
});

test("commands wait while offline and are sent after reconnecting", async () => {
  newClient();
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  const react = client.react("m1", "👍");
  latest().accept();
  const frame = latest().sentOf("react")[0];
  assert.deepEqual([frame.message, frame.emoji], ["m1", "👍"]);
  latest().push({ type: "ok", ref: frame.ref, seq: 3 });
  assert.equal((await react).seq, 3);
});

test("a socket that stops answering pings is dropped and replaced", async () => {
  newClient({ pingIntervalMs: 20, pongTimeoutMs: 20 });
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  const silent = latest();
  silent.accept();
  await waitFor(() => silent.sentOf("ping").length > 0, "a ping");
  await waitFor(() => FakeSocket.all.length === 2, "a reconnect after the missing pong");
  assert.ok(silent.closed, "the dead socket was closed");
});

test("close code 4001 means a bad token: no more reconnects", async () => {
  newClient();
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  let unauthorized = false;
  client.on("unauthorized", () => {
    unauthorized = true;
  });
  latest().drop(4001);
  await tick(80);
  assert.ok(unauthorized);
  assert.equal(client.status, "closed");
  assert.equal(FakeSocket.all.length, 1);
});
