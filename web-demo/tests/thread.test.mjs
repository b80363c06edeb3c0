// Unit tests of thread.js: merging REST pages with live events, pending sends, read receipts.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Thread } from "../public/thread.js";

const message = (seq, extra = {}) => ({
  id: `m${seq}`,
  conversation: "c",
  seq,
  author: "bob",
  body: `body ${seq}`,
  ts: seq,
  client_msg_id: `x${seq}`,
  ...extra,
});

test("a page merges with live messages without duplicates, oldest first", () => {
  const thread = new Thread("c");
  thread.loaded = true;
  thread.apply({ type: "message", ...message(3) });
  thread.mergePage([message(1), message(2), message(3)]);
  assert.deepEqual(thread.sorted().map((m) => m.seq), [1, 2, 3]);
  assert.equal(thread.oldestSeq(), 1);
  assert.equal(thread.newestSeq(), 3);
});

test("events that arrive while a page loads are applied again after it", () => {
  const thread = new Thread("c");
  thread.beginLoad();
  // The page was read before the edit and the reaction, which arrive first.
  thread.apply({ type: "message_edited", conversation: "c", seq: 4, message: "m1", author: "bob", body: "new", ts: 9 });
  thread.apply({ type: "reaction_added", conversation: "c", seq: 5, message: "m1", user: "alice", emoji: "👍", ts: 9 });
  thread.mergePage([message(1)]);
  thread.loaded = true;
  thread.endLoad();
  const [m1] = thread.sorted();
  assert.equal(m1.body, "new");
  assert.equal(m1.editedAt, 9);
  assert.deepEqual([...m1.reactions.get("👍")], ["alice"]);
});

test("reactions toggle per user and deletes clear the message", () => {
  const thread = new Thread("c");
  thread.loaded = true;
  thread.mergePage([message(1, { reactions: [{ emoji: "🎉", count: 1, users: ["bob"] }] })]);
  const react = (type, user) => thread.apply({ type, conversation: "c", seq: 2, message: "m1", user, emoji: "🎉", ts: 1 });
  react("reaction_added", "alice");
  react("reaction_added", "alice");
  assert.equal(thread.messages.get("m1").reactions.get("🎉").size, 2);
  react("reaction_removed", "bob");
  react("reaction_removed", "alice");
  assert.equal(thread.messages.get("m1").reactions.size, 0);
  thread.apply({ type: "message_deleted", conversation: "c", seq: 3, message: "m1", by: "bob", ts: 1 });
  assert.equal(thread.messages.get("m1").deleted, true);
  assert.equal(thread.messages.get("m1").body, "");
});

test("own messages are pending until their ack or their own event", () => {
  const thread = new Thread("c");
  thread.loaded = true;
  thread.addPending({ clientMsgId: "a", body: "one", ts: 1 });
  thread.addPending({ clientMsgId: "b", body: "two", ts: 1 });
  thread.acked("a");
  thread.apply({ type: "message", ...message(7, { author: "alice", client_msg_id: "b" }) });
  assert.equal(thread.pending.size, 0);
});

test("receipts sit at the newest message each member has read", () => {
  const thread = new Thread("c");
  thread.loaded = true;
  thread.mergePage([message(1), message(3), message(5)]);
  thread.setMembers([
    { user: "alice", role: "owner", read_seq: 5, joined_at: 0 },
    { user: "bob", role: "member", read_seq: 4, joined_at: 0 },
    { user: "carol", role: "member", read_seq: 0, joined_at: 0 },
  ]);
  assert.deepEqual(Object.fromEntries(thread.receipts("alice")), { m3: ["bob"] });
  assert.ok(thread.markRead("bob", 5));
  assert.ok(!thread.markRead("bob", 2), "markers only move forward");
  assert.deepEqual(Object.fromEntries(thread.receipts("alice")), { m5: ["bob"] });
});

test("typing notices expire", () => {
  const thread = new Thread("c");
  thread.setTyping("bob", 1000);
  assert.deepEqual(thread.typists(2000), ["bob"]);
  assert.deepEqual(thread.typists(10_000), []);
});
