// Type-checked by `tsc --noEmit -p test` (run-tests), never run: the package's declarations as
// an application sees them, through its `exports` ("@confab/client" resolves to this package).

import { WebSocket } from "ws";

import {
  ConfabClient,
  ConfabError,
  type ConversationSummary,
  type Rest,
  type ServerFrame,
  type UserEvent,
} from "@confab/client";

async function main(): Promise<void> {
  const client = new ConfabClient({
    baseUrl: "http://127.0.0.1:8080",
    token: async () => "a fresh token",
    WebSocket,
  });
  client.on("status", ({ status, reason }) => console.log(status, reason ?? ""));
  client.on("message", (m) => console.log(m.conversation, m.seq, m.author, m.body.toUpperCase()));
  client.on("conversation_added", (e) => {
    const summary: ConversationSummary | null | undefined = e.summary;
    console.log(e.user_seq, e.role, summary?.title);
  });
  client.on("user_event", (e: UserEvent) => console.log(e.type, e.user_seq));
  client.on("user_sync", ({ user_seq, resync }) => resync && console.log("re-read from", user_seq));
  client.on("send_failed", ({ error }) => console.log(error.code));
  client.connect();

  const { conversations } = await client.api.listConversations({ kind: "group" });
  const first = conversations[0];
  if (!first) return;
  const joined = await client.join(first.id);
  console.log(joined.last_seq, joined.recovered);
  const { clientMsgId, acked } = client.send(first.id, "hello", { replyTo: undefined });
  const ack = await acked;
  console.log(clientMsgId === ack.client_msg_id, ack.seq, ack.duplicate);
  const page = await client.api.history(first.id, { before: ack.seq, limit: 20 });
  for (const message of page.messages) console.log(message.id, message.body);
  // REST bodies are the OpenAPI document's schemas (rest.d.ts, generated).
  const created: Rest.Conversation = await client.api.createConversation({ title: "t", members: ["bob"] });
  const hits: Rest.MessageHits = await client.api.searchMessages("hello", { conversation: created.id });
  for (const hit of hits.hits) console.log(hit.snippet, hits.indexed_seq[hit.conversation]);
  const body: Rest.SendMessage = { body: "hi", client_msg_id: "c1" };
  console.log((await client.api.listMembers(created.id)).members.map((m) => m.role), body.body);
  try {
    await client.edit(ack.id, "hello again");
  } catch (err) {
    if (err instanceof ConfabError && err.code === "forbidden") console.log("not mine");
  }
  const frame: ServerFrame = { type: "pong" };
  console.log(frame.type, client.lastUserSeq(), client.lastSeq(first.id));
  client.close();

  // A fixed token works too, and so does the browser's (or Node 22's) global WebSocket.
  new ConfabClient({ baseUrl: "https://chat.example", token: "eyJ…" });
}

void main();
