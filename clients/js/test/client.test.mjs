// The client library in Node.js against the real server (test/server.mjs spawns `confab serve`):
// `ws` injected as the WebSocket implementation, tokens from `confab token`, the REST helpers on
// Node's fetch; join, send and ack, another user's message, user events without joining, and a
// server killed and restarted: the clients reconnect, resume with `since` and `user_resume`, and
// nothing is lost or doubled.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { WebSocket } from "ws";

import { ConfabClient } from "../src/confab.js";
import { Server } from "./server.mjs";

const TENANT = "acme";
const WAIT_MS = 15_000;

let server;
const clients = [];

before(async () => {
  server = await Server.start();
});

after(async () => {
  for (const client of clients) client.close();
  await server?.stop();
});

/** `ws` with every frame the client sends recorded. */
function recordingWebSocket(sent) {
  return class extends WebSocket {
    send(data) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  };
}

/** A connected client of `user` and what it saw: the events by type, and the frames it sent. */
async function connect(user, options = {}) {
  const sent = [];
  const client = new ConfabClient({
    baseUrl: server.baseUrl,
    token: server.cliToken(user, TENANT),
    WebSocket: recordingWebSocket(sent),
    initialBackoffMs: 200,
    maxBackoffMs: 1000,
    ...options,
  });
  clients.push(client);
  const seen = { messages: [], userEvents: [], statuses: [] };
  client.on("message", (m) => seen.messages.push(m));
  client.on("user_event", (e) => seen.userEvents.push(e));
  client.on("status", ({ status }) => seen.statuses.push(status));
  const welcomed = once(client, "welcome");
  client.connect();
  await welcomed;
  return { client, seen, sent };
}

function once(client, type) {
  return new Promise((resolve) => {
    const off = client.on(type, (detail) => {
      off();
      resolve(detail);
    });
  });
}

async function eventually(check, what) {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const bodies = (messages, conversation) =>
  messages.filter((m) => m.conversation === conversation).map((m) => m.body);

test("join, send and ack, another user's message, user events, and resume after a restart", async () => {
  const alice = await connect("alice");
  const bob = await connect("bob");
  assert.equal(alice.client.welcome.user, "alice");
  assert.ok(Number.isInteger(bob.client.lastUserSeq()), "welcome.user_seq starts the user stream");

  // REST on Node's fetch; bob hears of the conversation without joining anything.
  const group = await alice.client.api.createConversation({ title: "launch", members: ["bob"] });
  await eventually(() => bob.seen.userEvents.some((e) => e.conversation === group.id), "bob's conversation_added");
  const added = bob.seen.userEvents.find((e) => e.conversation === group.id);
  assert.equal(added.type, "conversation_added");
  assert.equal(added.summary?.title, "launch");

  await alice.client.join(group.id);
  await bob.client.join(group.id);
  const { acked } = alice.client.send(group.id, "hello bob");
  const ack = await acked;
  assert.equal(ack.conversation, group.id);
  assert.equal(ack.duplicate, false);
  await eventually(() => bodies(bob.seen.messages, group.id).length === 1, "bob to get alice's message");
  assert.equal(bob.seen.messages[0].author, "alice");
  assert.equal(bob.seen.messages[0].seq, ack.seq);

  // The server dies. While it is down alice sends (kept in her outbox); right after it is back,
  // before bob's reconnect (his backoff is longer), messages and a new conversation for bob.
  const bobResumes = bob.sent.length;
  const aliceResumes = alice.sent.length;
  const slowBob = bob.client.options;
  slowBob.initialBackoffMs = 1500;
  await server.restart();
  const offline = alice.client.send(group.id, "sent while the server was down");
  const token = server.cliToken("carol", TENANT);
  const other = await server.rest(token, "POST", "/v1/conversations", { kind: "group", title: "later", members: ["bob"] });
  for (const body of ["missed 1", "missed 2"]) {
    await server.rest(server.cliToken("alice", TENANT), "POST", `/v1/conversations/${group.id}/messages`, {
      client_msg_id: crypto.randomUUID(),
      body,
    });
  }
  await offline.acked;
  await eventually(() => bodies(bob.seen.messages, group.id).length >= 4, "bob to catch up");
  await eventually(() => bob.seen.userEvents.some((e) => e.conversation === other.id), "the conversation added while away");
  // Anything doubled would arrive right after: give it a moment.
  await new Promise((r) => setTimeout(r, 300));

  const got = bodies(bob.seen.messages, group.id);
  assert.equal(got.length, 4, `each message once: ${JSON.stringify(got)}`);
  assert.deepEqual(new Set(got), new Set(["hello bob", "sent while the server was down", "missed 1", "missed 2"]));
  const seqs = bob.seen.messages.filter((m) => m.conversation === group.id).map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in order");
  assert.equal(new Set(bob.seen.userEvents.map((e) => e.user_seq)).size, bob.seen.userEvents.length, "no user event twice");
  assert.equal(bob.seen.userEvents.filter((e) => e.conversation === other.id).length, 1);

  // How: a rejoin with `since` = the last seq seen, and `user_resume` with the last user_seq.
  const rejoin = bob.sent.slice(bobResumes).find((f) => f.type === "join" && f.conversation === group.id);
  assert.equal(rejoin?.since, ack.seq);
  const resume = bob.sent.slice(bobResumes).find((f) => f.type === "user_resume");
  assert.equal(resume?.since, added.user_seq);
  assert.ok(alice.sent.slice(aliceResumes).some((f) => f.type === "user_resume"));
  assert.ok(bob.seen.statuses.includes("reconnecting"));
  assert.equal(bob.client.status, "online");
  assert.equal(alice.client.unacked().length, 0);
});

test("without a WebSocket implementation the constructor throws, and nothing is attempted", () => {
  const saved = globalThis.WebSocket;
  delete globalThis.WebSocket; // Node 22 has one; Node 20 does not
  try {
    assert.throws(
      () => new ConfabClient({ baseUrl: server.baseUrl, token: "t" }),
      (err) => err instanceof TypeError && /no WebSocket implementation.*`ws` package/.test(err.message),
    );
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
});

test("a refused token ends the client as unauthorized", async () => {
  const client = new ConfabClient({ baseUrl: server.baseUrl, token: "not-a-token", WebSocket, initialBackoffMs: 50 });
  clients.push(client);
  const unauthorized = once(client, "unauthorized");
  client.connect();
  await unauthorized;
  assert.equal(client.status, "closed");
});
