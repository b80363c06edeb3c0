// Unit tests of confab.js (the client library) against a scripted fake WebSocket: reconnect
// with backoff, resume with `since` and no duplicate events, the outbox retried until acked,
// dead-socket detection, and a refused token; then, against a fake fetch, uploads (one request,
// or chunks resumed after a failure), signed links and thumbnails. No browser, no server.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { afterEach, beforeEach, test } from "node:test";

import { ConfabApi, ConfabClient, backoffDelay, hasThumbnail, planChunks, tokenExpiry } from "../src/confab.js";

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
  accept(user = "alice", extra = {}) {
    this.readyState = 1;
    this.push({ type: "welcome", user, tenant: "t", session: "s1", heartbeat_ms: 25000, limits: {}, ...extra });
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

test("user events: resumed after a reconnect with the last user_seq, none lost or twice", async () => {
  newClient();
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  const first = latest();
  first.accept("alice", { user_seq: 3 });
  assert.deepEqual(first.sentOf("user_resume"), [], "a first connection starts at welcome.user_seq");
  const seen = [];
  client.on("user_event", (e) => seen.push([e.type, e.user_seq]));
  const syncs = [];
  client.on("user_sync", (f) => syncs.push(f));
  const added = (userSeq) => ({ type: "conversation_added", user_seq: userSeq, conversation: `c${userSeq}`, role: "member", ts: 1 });
  first.push(added(4));
  first.push(added(4));
  first.drop();

  await waitFor(() => FakeSocket.all.length === 2, "a reconnect");
  const second = latest();
  second.accept("alice", { user_seq: 6 });
  const resume = second.sentOf("user_resume");
  assert.deepEqual(resume.map((f) => f.since), [4]);
  // A live event that overtook the replay waits for it (the server sends it again after 6).
  second.push({ type: "read_moved", user_seq: 7, conversation: "c4", read_seq: 2, ts: 1 });
  second.push(added(5));
  second.push({ type: "role_changed", user_seq: 6, conversation: "c4", role: "admin", ts: 1 });
  second.push({ type: "read_moved", user_seq: 7, conversation: "c4", read_seq: 2, ts: 1 });
  second.push({ type: "user_sync", ref: resume[0].ref, user_seq: 7, resync: false });
  second.push({ type: "read_moved", user_seq: 7, conversation: "c4", read_seq: 2, ts: 1 });
  assert.deepEqual(seen, [
    ["conversation_added", 4],
    ["conversation_added", 5],
    ["role_changed", 6],
    ["read_moved", 7],
  ]);
  assert.deepEqual(syncs.map((f) => [f.user_seq, f.resync]), [[7, false]]);
  assert.equal(client.lastUserSeq(), 7);

  // Too far behind: the server says resync, and the client goes on from its user_seq.
  second.push({ type: "user_sync", user_seq: 2000, resync: true });
  second.push(added(2001));
  assert.equal(client.lastUserSeq(), 2001);
  assert.deepEqual(seen.at(-1), ["conversation_added", 2001]);
});

test("userSince resumes the user events of an earlier run on the first connection", async () => {
  newClient({ userSince: 9 });
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  latest().accept("alice", { user_seq: 12 });
  assert.deepEqual(latest().sentOf("user_resume").map((f) => f.since), [9]);
});

test("construction needs a WebSocket implementation and, outside a browser, a baseUrl", () => {
  delete globalThis.WebSocket;
  assert.throws(() => new ConfabClient({ baseUrl: "http://127.0.0.1:9", token: "t" }), /no WebSocket implementation/);
  assert.throws(
    () => new ConfabClient({ token: "t", WebSocket: FakeSocket }),
    /`baseUrl` is required outside a browser/,
  );
  assert.throws(() => new ConfabClient({ baseUrl: "not a url", token: "t", WebSocket: FakeSocket }), /not an absolute URL/);
  assert.throws(() => new ConfabApi({ token: "t" }), /`baseUrl` is required/);
  const injected = new ConfabClient({ baseUrl: "http://127.0.0.1:9", token: "t", WebSocket: FakeSocket });
  assert.equal(injected.WebSocket, FakeSocket);
});

test("a WebSocket constructor that throws fails the client once, with no reconnect loop", async () => {
  let attempts = 0;
  class Throwing {
    constructor() {
      attempts += 1;
      throw new SyntaxError("bad url");
    }
  }
  const statuses = newClient({ WebSocket: Throwing, initialBackoffMs: 1 });
  const errors = [];
  client.on("error", (e) => errors.push(e));
  const { acked } = client.send("c1", "hi");
  await assert.rejects(acked, { code: "connect_failed" });
  await tick(50);
  assert.equal(attempts, 1);
  assert.equal(client.status, "failed");
  assert.deepEqual(statuses, ["connecting", "failed"]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "connect_failed");
  assert.match(errors[0].message, /bad url/);
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

/** A JWT-shaped token (unsigned: the fake server does not check) expiring in `secs`. */
function jwt(name, secs) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256" })}.${part({ sub: name, exp: Math.floor(Date.now() / 1000) + secs })}.sig`;
}

test("tokenExpiry reads a JWT's exp, and null from anything else", () => {
  const token = jwt("alice", 100);
  assert.ok(Math.abs(tokenExpiry(token) - (Date.now() / 1000 + 100)) < 2);
  assert.equal(tokenExpiry("tok"), null);
  assert.equal(tokenExpiry("a.%%%.c"), null);
});

test("with a token function, the token is refreshed over the socket before it expires", async () => {
  let issued = 0;
  newClient({
    token: () => jwt(`t${(issued += 1)}`, 30),
    refreshAheadMs: 60_000,
    refreshFloorMs: 20,
  });
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  const socket = latest();
  socket.accept();
  await waitFor(() => socket.sentOf("refresh").length === 1, "a refresh frame");
  const [refresh] = socket.sentOf("refresh");
  assert.equal(tokenExpiry(refresh.token) !== null, true);
  assert.notEqual(refresh.token, socket.url.searchParams.get("token"), "a new token");
  socket.push({ type: "ok", ref: refresh.ref });
  // It keeps refreshing while the token stays within refreshAheadMs of expiring.
  await waitFor(() => socket.sentOf("refresh").length >= 2, "the next refresh");
  assert.equal(FakeSocket.all.length, 1, "no reconnect");
});

test("close code 4003 (token expired) reconnects with a new token from the function", async () => {
  let issued = 0;
  newClient({ token: () => `tok-${(issued += 1)}` });
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  latest().accept();
  latest().drop(4003);
  await waitFor(() => FakeSocket.all.length === 2, "a reconnect");
  assert.equal(latest().url.searchParams.get("token"), "tok-2");
  assert.notEqual(client.status, "closed");
});

test("close code 4003 with a fixed token string ends the client: unauthorized", async () => {
  newClient();
  await waitFor(() => FakeSocket.all.length === 1, "a socket");
  let unauthorized = false;
  client.on("unauthorized", () => {
    unauthorized = true;
  });
  latest().accept();
  latest().drop(4003);
  await tick(80);
  assert.ok(unauthorized);
  assert.equal(client.status, "closed");
  assert.equal(FakeSocket.all.length, 1);
});

// ---------------------------------------------------------------------------------------------
// Media: uploads against a scripted fake fetch (Node has no XMLHttpRequest, so the library's
// fetch path carries the bodies), signed links and thumbnails.

/** A fake server: `routes` maps "METHOD /path" (the path without the origin) to a handler. */
function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const { pathname, origin } = new URL(url);
    const method = init.method || "GET";
    const call = { method, path: pathname, origin, headers: { ...init.headers }, body: init.body };
    calls.push(call);
    const route = routes[`${method} ${pathname}`] || routes[`${method} ${pathname.replace(/\/\d+$/, "/{n}")}`];
    if (!route) return Response.json({ error: { code: "not_found", message: "no route" } }, { status: 404 });
    return route(call);
  };
  return { fetch, calls };
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const refusal = (status, code, message) => Response.json({ error: { code, message } }, { status });
const mediaInfo = (extra = {}) => ({ id: "med1", name: "notes.txt", content_type: "text/plain", size: 10, ...extra });

let realFetch;

function withFetch(routes) {
  const fake = fakeFetch(routes);
  realFetch ??= globalThis.fetch;
  globalThis.fetch = fake.fetch;
  return fake;
}

afterEach(() => {
  if (realFetch) globalThis.fetch = realFetch;
});

const api = () => new ConfabApi({ baseUrl: "http://127.0.0.1:9", token: async () => "tok" });

test("planChunks cuts a file into chunk-sized ranges, the last one shorter", () => {
  assert.deepEqual(planChunks(0, 4), []);
  assert.deepEqual(planChunks(4, 4), [{ n: 0, start: 0, end: 4 }]);
  assert.deepEqual(planChunks(10, 4), [
    { n: 0, start: 0, end: 4 },
    { n: 1, start: 4, end: 8 },
    { n: 2, start: 8, end: 10 },
  ]);
  assert.equal(planChunks(5 * 1024 * 1024 * 3 + 1, 5 * 1024 * 1024).length, 4);
  assert.throws(() => planChunks(10, 0), RangeError);
});

test("a small file goes up in one multipart request with the token and the conversation", async () => {
  const fake = withFetch({ "POST /v1/media": () => Response.json(mediaInfo(), { status: 201 }) });
  const file = new File(["hello file"], "notes.txt", { type: "text/plain" });
  const progress = [];
  const info = await api().uploadFile(file, { conversation: "c1", onProgress: (p) => progress.push(p) });
  assert.equal(info.id, "med1");
  assert.equal(fake.calls.length, 1);
  const [call] = fake.calls;
  assert.equal(call.headers.authorization, "Bearer tok");
  assert.ok(call.body instanceof FormData);
  assert.equal(call.body.get("conversation"), "c1");
  assert.equal(call.body.get("file").name, "notes.txt");
  assert.equal(await call.body.get("file").text(), "hello file");
  assert.deepEqual(progress.at(-1), { phase: "uploading", loaded: 10, total: 10 });
});

test("a refused upload rejects with the server's code, status and message", async () => {
  withFetch({ "POST /v1/media": () => refusal(415, "unsupported_media_type", "executable files (text/x-shellscript) are not allowed") });
  const file = new File(["#!/bin/sh\n"], "run.sh");
  await assert.rejects(api().uploadFile(file), {
    name: "ConfabError",
    code: "unsupported_media_type",
    status: 415,
    message: "executable files (text/x-shellscript) are not allowed",
  });
});

/** A resumable upload's server: chunks of 4 bytes, `failOnce` chunk numbers whose first PUT fails. */
function chunkServer({ failOnce = [], complete } = {}) {
  const received = new Map();
  const failed = new Set();
  const fake = withFetch({
    "POST /v1/media/uploads": () => Response.json({ upload_id: "up1", chunk_size: 4, chunk_count: 3, expires_after_secs: 300 }, { status: 201 }),
    "PUT /v1/media/uploads/up1/chunks/{n}": async (call) => {
      const n = Number(call.path.split("/").pop());
      if (failOnce.includes(n) && !failed.has(n)) {
        failed.add(n);
        throw new TypeError("fetch failed"); // what fetch throws when the connection drops
      }
      received.set(n, Buffer.from(call.body));
      return new Response(null, { status: 204 });
    },
    "GET /v1/media/uploads/up1": () =>
      Response.json({ upload_id: "up1", received_bytes: 0, size: 10, chunk_size: 4, missing_chunks: [0, 1, 2].filter((n) => !received.has(n)) }),
    "POST /v1/media/uploads/up1/complete": () =>
      complete ? complete(received) : Response.json(mediaInfo({ size: 10 }), { status: 201 }),
    "DELETE /v1/media/uploads/up1": () => new Response(null, { status: 204 }),
  });
  return { fake, received };
}

const tenBytes = () => new File(["0123456789"], "notes.txt", { type: "text/plain" });
const route = (call) => `${call.method} ${call.path.replace("/v1/media/uploads", "")}`;

test("a big file goes up in hashed chunks, and after a dropped chunk only the missing ones are sent", async () => {
  const { fake, received } = chunkServer({ failOnce: [1] });
  const sleeps = [];
  const progress = [];
  const info = await api().uploadFile(tenBytes(), {
    conversation: "c1",
    singleMaxBytes: 4,
    sleep: async (ms) => sleeps.push(ms),
    onProgress: (p) => progress.push(p),
  });
  assert.equal(info.id, "med1");
  assert.deepEqual(fake.calls.map(route), [
    "POST ",
    "PUT /up1/chunks/0",
    "PUT /up1/chunks/1", // dropped
    "GET /up1", // what is missing? 1 and 2
    "PUT /up1/chunks/1",
    "PUT /up1/chunks/2",
    "POST /up1/complete",
  ]);
  assert.deepEqual(JSON.parse(fake.calls[0].body), {
    name: "notes.txt",
    size: 10,
    content_type: "text/plain",
    conversation: "c1",
    sha256: sha256("0123456789"),
  });
  for (const call of fake.calls.filter((c) => c.method === "PUT")) {
    assert.equal(call.headers["x-chunk-sha256"], sha256(Buffer.from(call.body)));
    assert.equal(call.headers.authorization, "Bearer tok");
  }
  assert.equal(Buffer.concat([0, 1, 2].map((n) => received.get(n))).toString(), "0123456789");
  assert.equal(sleeps.length, 1, "one wait before resuming");
  assert.ok(sleeps[0] >= 500 && sleeps[0] <= 1000, `backoff ${sleeps[0]} ms`);
  assert.equal(progress[0].phase, "hashing");
  assert.deepEqual(progress.at(-1), { phase: "uploading", loaded: 10, total: 10 });
  const sent = progress.filter((p) => p.phase === "uploading").map((p) => p.loaded);
  assert.ok(sent.includes(4), "the first chunk counted once it was in");
});

test("a completion refused for missing chunks resumes; a 5xx is retried with backoff", async () => {
  let completions = 0;
  const { fake } = chunkServer({
    complete: (received) => {
      completions += 1;
      if (completions === 1) {
        received.delete(2); // the server lost a chunk
        return refusal(409, "conflict", "chunks are missing");
      }
      if (completions === 2) return refusal(503, "unavailable", "shutting down");
      return Response.json(mediaInfo(), { status: 201 });
    },
  });
  const sleeps = [];
  await api().uploadFile(tenBytes(), { singleMaxBytes: 4, sleep: async (ms) => sleeps.push(ms) });
  assert.deepEqual(fake.calls.map(route).slice(4), [
    "POST /up1/complete", // 409
    "GET /up1",
    "PUT /up1/chunks/2",
    "POST /up1/complete", // 503
    "GET /up1",
    "POST /up1/complete",
  ]);
  assert.equal(sleeps.length, 2);
});

test("a resumable upload gives up after its retries, or at once on a refusal, and deletes the upload", async () => {
  const { fake } = chunkServer();
  fake.calls.length = 0;
  globalThis.fetch = async (url, init = {}) => {
    fake.calls.push({ method: init.method || "GET", path: new URL(url).pathname });
    if (init.method === "POST" && url.endsWith("/v1/media/uploads")) {
      return Response.json({ upload_id: "up1", chunk_size: 4, chunk_count: 3, expires_after_secs: 300 }, { status: 201 });
    }
    if (init.method === "DELETE") return new Response(null, { status: 204 });
    throw new TypeError("fetch failed");
  };
  const sleeps = [];
  await assert.rejects(
    api().uploadFile(tenBytes(), { singleMaxBytes: 4, retries: 3, sleep: async (ms) => sleeps.push(ms) }),
    { code: "network" },
  );
  assert.equal(sleeps.length, 3);
  assert.ok(sleeps[2] <= 4000);
  await tick();
  assert.equal(fake.calls.at(-1).method, "DELETE");

  chunkServer({ complete: () => refusal(422, "checksum_mismatch", "the file does not match its sha256") });
  const sleepsAfterRefusal = [];
  await assert.rejects(
    api().uploadFile(tenBytes(), { singleMaxBytes: 4, sleep: async (ms) => sleepsAfterRefusal.push(ms) }),
    { code: "checksum_mismatch", status: 422 },
  );
  assert.deepEqual(sleepsAfterRefusal, [], "a refusal is not retried");
});

test("an upload cancelled while waiting to resume stops and deletes the upload", async () => {
  const { fake } = chunkServer({ failOnce: [0] });
  const controller = new AbortController();
  const upload = api().uploadFile(tenBytes(), { singleMaxBytes: 4, retryDelayMs: 60_000, signal: controller.signal });
  await waitFor(() => fake.calls.some((c) => c.method === "PUT"), "the first chunk");
  await tick(5);
  controller.abort();
  await assert.rejects(upload, { name: "AbortError" });
  await tick();
  assert.deepEqual(fake.calls.map(route), ["POST ", "PUT /up1/chunks/0", "DELETE /up1"]);
});

test("signed links are asked for once per file and reused until shortly before they expire", async () => {
  let expiresAt = Math.floor(Date.now() / 1000) + 3600;
  let signed = 0;
  const fake = withFetch({
    "POST /v1/media/med1/signed": () => {
      signed += 1;
      return Response.json({ url: `/v1/signed/media/med1?tenant=dev&expires=${expiresAt}&sig=s${signed}`, expires_at: expiresAt });
    },
  });
  const client = api();
  assert.equal(client.cachedMediaLink("med1"), null);
  const [a, b] = await Promise.all([client.mediaLink("med1"), client.mediaLink("med1")]);
  assert.equal(signed, 1, "concurrent callers share one request");
  assert.equal(a, b);
  assert.equal(a.url, `http://127.0.0.1:9/v1/signed/media/med1?tenant=dev&expires=${expiresAt}&sig=s1`);
  assert.equal(a.expiresAt, expiresAt * 1000);
  assert.equal(client.cachedMediaLink("med1"), a);
  await client.mediaLink("med1");
  assert.equal(signed, 1);
  assert.equal(fake.calls[0].headers.authorization, "Bearer tok");

  // A link with less than a minute left is replaced.
  client.links.get("med1").link.expiresAt = Date.now() + 30_000;
  assert.equal(client.cachedMediaLink("med1"), null);
  expiresAt += 10;
  const renewed = await client.mediaLink("med1");
  assert.equal(signed, 2);
  assert.match(renewed.url, /sig=s2$/);
});

test("thumbnails come back as blobs; a refused one is a ConfabError", async () => {
  withFetch({
    "GET /v1/media/med1/thumbnail": (call) => {
      assert.equal(call.headers.authorization, "Bearer tok");
      return new Response(new Uint8Array([0xff, 0xd8, 0xff]), { headers: { "content-type": "image/jpeg" } });
    },
    "GET /v1/media/med2/thumbnail": () =>
      refusal(415, "unsupported_media_type", "this file is not an image with a thumbnail"),
  });
  const blob = await api().mediaThumbnail("med1");
  assert.equal(blob.type, "image/jpeg");
  assert.equal(blob.size, 3);
  await assert.rejects(api().mediaThumbnail("med2"), { code: "unsupported_media_type", status: 415 });
  assert.ok(hasThumbnail("image/png") && hasThumbnail("IMAGE/JPEG") && !hasThumbnail("image/svg+xml"));
});
