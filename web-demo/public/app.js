// The Confab web demo: sign-in, the conversation list, and the open conversation. Protocol work
// is confab.js's; the message list is view.js's; each conversation's state is a thread.js Thread;
// the composer's attachments are uploads.js's; the search box is search.js's.

import { ConfabClient, ConfabError } from "./confab.js";
import { conversationName as nameOf, renderConversationList as renderList } from "./sidebar.js";
import { SearchBox } from "./search.js";
import { clearSession, loadSession, showSignIn, takeNotice } from "./signin.js";
import { Thread } from "./thread.js";
import { UploadTray } from "./uploads.js";
import { describeError, h, hueFor, initials, joinNames, messagePreview, parseUserList, setError, toast } from "./util.js";
import { MessageView } from "./view.js";

const HISTORY_PAGE = 50;
/** Pages fetched while paging back to a search hit: the most the server gives at once. */
const REVEAL_PAGE = 200;
/** How long a message opened from search stays highlighted. */
const FOUND_HIGHLIGHT_MS = 2500;

const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  client: null,
  api: null,
  view: null,
  /** the composer's attachments (an UploadTray) */
  uploads: null,
  /** media id → Promise of a blob: URL of its thumbnail */
  thumbnails: new Map(),
  /** id → ConversationSummary (kept current from events) */
  conversations: new Map(),
  /** id → Thread */
  threads: new Map(),
  activeId: null,
  replyTo: null,
  deleteTarget: null,
  /** message id → message fetched for a reply quote */
  replyCache: new Map(),
  readTimer: null,
  typingTimer: null,
};

function signOut(reason) {
  clearSession(reason);
  if (state.client) state.client.close();
  location.hash = "";
  location.reload();
}

// ---------------------------------------------------------------------------------------------
// Startup and connection

function startApp(session) {
  state.me = session.user;
  state.client = new ConfabClient({ token: session.token });
  state.api = state.client.api;
  $("app").hidden = false;
  $("me-name").textContent = session.name || session.user;
  $("me-name").title = `Signed in as ${session.user}`;
  const me = $("me-avatar");
  me.textContent = initials(session.user);
  me.style.setProperty("--hue", hueFor(session.user));

  state.view = new MessageView({
    scroller: $("messages"),
    list: $("message-list"),
    edge: $("history-edge"),
    me: state.me,
    actions: {
      reply: startReply,
      toggleReaction,
      edit: (m, body) => state.client.edit(m.id, body).catch(reportError),
      remove: confirmDelete,
      retry: retrySend,
      discard: (p) => {
        const thread = activeThread();
        if (thread) thread.pending.delete(p.clientMsgId);
        renderActive();
      },
      loadOlder: () => loadOlder(activeThread()),
      replyTarget,
      mediaLink: (id) => state.api.mediaLink(id),
      cachedMediaLink: (id) => state.api.cachedMediaLink(id),
      thumbnail,
    },
  });
  state.uploads = new UploadTray({
    list: $("upload-tray"),
    api: state.api,
    onChange: renderSendButton,
    notify: (text) => toast(text, "error"),
  });

  const client = state.client;
  client.on("status", renderStatus);
  // The list is read on each (re)connect, which covers whatever happened while away, and
  // again on each of this user's own events: no polling.
  client.on("welcome", () => refreshConversations());
  for (const type of ["conversation_added", "conversation_removed", "role_changed", "read_moved"]) {
    client.on(type, () => refreshConversations());
  }
  client.on("event", onDurableEvent);
  client.on("typing", onTyping);
  client.on("read", onRead);
  client.on("ack", (ack) => {
    const thread = state.threads.get(ack.conversation);
    if (thread) thread.acked(ack.client_msg_id);
    if (ack.conversation === state.activeId) renderActive();
  });
  client.on("send_failed", ({ clientMsgId, conversation, error }) => {
    const thread = state.threads.get(conversation);
    if (thread) thread.failPending(clientMsgId, describeError(error));
    if (conversation === state.activeId) renderActive();
  });
  client.on("gap", ({ conversation }) => {
    const thread = state.threads.get(conversation);
    if (!thread) return;
    thread.reset();
    if (conversation === state.activeId) openConversation(conversation);
  });
  client.on("join_failed", ({ conversation }) => forgetConversation(conversation));
  client.on("unauthorized", () => signOut("Your session has expired. Sign in again."));
  client.connect();

  wireChrome();
  new SearchBox({
    slot: $("search-slot"),
    api: state.api,
    conversationName: (id) => {
      const summary = state.conversations.get(id);
      return summary ? conversationName(summary) : "Conversation";
    },
    onOpen: openHit,
  });
  refreshConversations().then(() => {
    const fromHash = decodeURIComponent((location.hash.match(/^#\/c\/(.+)$/) || [])[1] || "");
    if (fromHash && state.conversations.has(fromHash)) openConversation(fromHash);
  });
  document.addEventListener("visibilitychange", scheduleRead);
  window.addEventListener("focus", scheduleRead);
}

function renderStatus({ status, delayMs }) {
  const badge = $("status");
  const text = $("status-text");
  const labels = {
    idle: "Connecting…",
    connecting: "Connecting…",
    online: "Online",
    reconnecting: "Reconnecting…",
    closed: "Offline",
    failed: "Cannot connect",
  };
  badge.className = `status status-${status}`;
  badge.dataset.status = status;
  text.textContent = labels[status] || status;
  badge.title =
    status === "reconnecting" && delayMs ? `Connection lost; retrying in ${Math.ceil(delayMs / 1000)} s` : "";
}

function reportError(err) {
  toast(describeError(err), "error");
}

/**
 * A thumbnail as a blob: URL (it needs the token, so an <img> cannot load it directly). Kept
 * for the page's lifetime: thumbnails are small and a file's thumbnail never changes.
 */
function thumbnail(id) {
  let url = state.thumbnails.get(id);
  if (!url) {
    url = state.api.mediaThumbnail(id).then((blob) => URL.createObjectURL(blob));
    state.thumbnails.set(id, url);
    // A network failure is worth another try when the message is drawn again.
    url.catch((err) => {
      if (err.code === "network") state.thumbnails.delete(id);
    });
  }
  return url;
}

// ---------------------------------------------------------------------------------------------
// Conversations

function threadFor(id) {
  let thread = state.threads.get(id);
  if (!thread) {
    thread = new Thread(id);
    state.threads.set(id, thread);
  }
  return thread;
}

function activeThread() {
  return state.activeId ? state.threads.get(state.activeId) : null;
}

let refreshing = null;

/** Fetches the list; joins conversations seen for the first time. */
function refreshConversations() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const { conversations } = await state.api.listConversations();
      const seen = new Set();
      for (const summary of conversations) {
        seen.add(summary.id);
        const known = state.conversations.get(summary.id);
        if (!known) {
          state.conversations.set(summary.id, summary);
          state.client.join(summary.id, { since: summary.last_seq }).catch(() => {});
          continue;
        }
        known.title = summary.title;
        known.archived = summary.archived;
        known.role = summary.role;
        // Only a list at least as new as what the socket delivered may correct the counts.
        const live = state.client.lastSeq(summary.id) || 0;
        if (summary.last_seq >= live && summary.last_seq >= known.last_seq) {
          known.last_seq = summary.last_seq;
          known.last_message = summary.last_message;
          known.read_seq = Math.max(known.read_seq, summary.read_seq);
          if (summary.id !== state.activeId) known.unread = summary.unread;
        }
      }
      for (const id of [...state.conversations.keys()]) if (!seen.has(id)) forgetConversation(id);
      renderConversationList();
      for (const summary of state.conversations.values()) {
        if (!summary.title) nameUntitled(summary);
      }
    } catch (err) {
      if (err instanceof ConfabError && err.code === "unauthorized") {
        signOut("Your session has expired. Sign in again.");
      }
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** Untitled conversations are named after their other members. */
async function nameUntitled(summary) {
  const thread = threadFor(summary.id);
  if (!thread.membersLoaded) await loadMembers(thread);
  renderConversationList();
}

async function loadMembers(thread) {
  try {
    const { members } = await state.api.listMembers(thread.id);
    thread.setMembers(members);
  } catch {
    // Shown as unnamed; the next refresh tries again.
  }
}

function conversationName(summary) {
  return nameOf(state, summary);
}

function renderConversationList() {
  renderList(state, openConversation);
}

function forgetConversation(id) {
  if (!state.conversations.has(id)) return;
  state.conversations.delete(id);
  state.threads.delete(id);
  state.uploads.discard(id);
  if (state.client.lastSeq(id) !== null) state.client.leave(id).catch(() => {});
  if (state.activeId === id) closeConversation();
  renderConversationList();
}

// ---------------------------------------------------------------------------------------------
// The open conversation

async function openConversation(id) {
  const summary = state.conversations.get(id);
  if (!summary) return;
  if (state.activeId !== id) cancelReply();
  state.activeId = id;
  history.replaceState(null, "", `#/c/${encodeURIComponent(id)}`);
  $("layout").classList.add("show-chat");
  $("chat-empty").hidden = true;
  $("chat-main").hidden = false;
  const thread = threadFor(id);
  state.view.show(thread);
  state.uploads.show(id);
  renderHeader();
  renderTyping();
  renderConversationList();
  if (window.matchMedia("(pointer: fine)").matches) $("composer-input").focus({ preventScroll: true });
  const work = [];
  if (!thread.membersLoaded) work.push(loadMembers(thread));
  if (!thread.loaded) work.push(loadLatest(thread));
  await Promise.all(work);
  if (state.activeId !== id) return;
  renderHeader();
  state.view.render({ stickToBottom: true });
  markActiveRead();
}

function closeConversation() {
  state.activeId = null;
  cancelReply();
  state.uploads.show(null);
  history.replaceState(null, "", location.pathname);
  $("layout").classList.remove("show-chat");
  $("chat-main").hidden = true;
  $("chat-empty").hidden = false;
  renderConversationList();
}

async function loadLatest(thread) {
  thread.beginLoad();
  try {
    const page = await state.api.history(thread.id, { limit: HISTORY_PAGE });
    thread.mergePage(page.messages);
    thread.hasMoreBefore = page.has_more;
    thread.loaded = true;
  } catch (err) {
    reportError(err);
  } finally {
    thread.endLoad();
  }
}

/** The page of history being fetched (one at a time). */
let olderLoad = null;

/** Loads the page before the oldest loaded message; resolves when the load in flight ends. */
function loadOlder(thread, limit = HISTORY_PAGE) {
  if (state.view.loadingOlder) return olderLoad;
  if (!thread || !thread.loaded || !thread.hasMoreBefore) return Promise.resolve();
  const before = thread.oldestSeq();
  if (before === null) return Promise.resolve();
  state.view.setLoadingOlder(true);
  thread.beginLoad();
  olderLoad = (async () => {
    try {
      const page = await state.api.history(thread.id, { before, limit });
      thread.mergePage(page.messages);
      thread.hasMoreBefore = page.has_more;
    } catch (err) {
      reportError(err);
    } finally {
      thread.endLoad();
      state.view.setLoadingOlder(false);
    }
    if (thread.id === state.activeId) state.view.render();
  })();
  return olderLoad;
}

/**
 * A search hit was chosen: opens its conversation, pages the history back until the message is
 * loaded, then scrolls to it and highlights it.
 */
async function openHit(hit) {
  if (!state.conversations.has(hit.conversation)) await refreshConversations();
  if (!state.conversations.has(hit.conversation)) {
    toast("That conversation is no longer available.", "error");
    return;
  }
  await openConversation(hit.conversation);
  const thread = activeThread();
  if (!thread || thread.id !== hit.conversation) return;
  // A load that ends without an older page (a failure, or another conversation's page that was
  // in flight) is tried once more before giving up.
  let stalls = 0;
  while (!thread.messages.has(hit.id) && thread.loaded && thread.hasMoreBefore && stalls < 2) {
    const oldest = thread.oldestSeq();
    if (oldest !== null && oldest < hit.seq) break; // loaded past it: it is gone
    await loadOlder(thread, REVEAL_PAGE);
    if (state.activeId !== thread.id) return;
    stalls = thread.oldestSeq() === oldest ? stalls + 1 : 0;
  }
  if (state.activeId !== thread.id) return;
  if (!thread.messages.has(hit.id)) {
    toast("That message is no longer there.", "error");
    return;
  }
  state.view.render();
  state.view.jumpTo(hit.id);
  const row = document.getElementById(`msg-${hit.id}`);
  if (row) {
    row.classList.add("msg-found");
    setTimeout(() => row.classList.remove("msg-found"), FOUND_HIGHLIGHT_MS);
  }
}

function renderActive() {
  if (state.activeId) state.view.render();
}

function renderHeader() {
  const summary = state.conversations.get(state.activeId);
  const thread = activeThread();
  if (!summary || !thread) return;
  const name = conversationName(summary);
  $("chat-title").textContent = name;
  document.title = `${name} · Confab`;
  const members = [...thread.members.keys()].sort();
  $("chat-members").textContent = members.length
    ? `${members.length} member${members.length === 1 ? "" : "s"}: ${joinNames(members, 6)}`
    : "";
  $("add-member-btn").hidden = !(summary.role === "owner" || summary.role === "admin") || summary.kind === "direct";
}

function replyTarget(id) {
  for (const thread of state.threads.values()) {
    const message = thread.messages.get(id);
    if (message) return message;
  }
  if (!state.replyCache.has(id)) {
    state.replyCache.set(id, null);
    state.api
      .getMessage(id)
      .then((raw) => {
        state.replyCache.set(id, {
          id: raw.id,
          author: raw.author,
          body: raw.body,
          deleted: raw.deleted,
          version: 0,
        });
        renderActive();
      })
      .catch(() => {});
  }
  return state.replyCache.get(id);
}

// ---------------------------------------------------------------------------------------------
// Live events

function onDurableEvent(frame) {
  const summary = state.conversations.get(frame.conversation);
  if (!summary) return;
  const thread = threadFor(frame.conversation);
  thread.apply(frame);
  summary.last_seq = Math.max(summary.last_seq, frame.seq);
  const active = frame.conversation === state.activeId;
  switch (frame.type) {
    case "message":
      summary.last_message = { ...frame, deleted: false };
      if (frame.author !== state.me && !(active && readable())) summary.unread += 1;
      break;
    case "message_edited":
      if (summary.last_message && summary.last_message.id === frame.message) summary.last_message.body = frame.body;
      break;
    case "message_deleted":
      if (summary.last_message && summary.last_message.id === frame.message) summary.last_message.deleted = true;
      break;
    case "member_removed":
      if (frame.user === state.me) {
        toast(`You left or were removed from ${conversationName(summary)}.`);
        forgetConversation(frame.conversation);
        return;
      }
      break;
    case "conversation_updated":
      summary.title = frame.title;
      summary.archived = frame.archived;
      break;
    default:
      break;
  }
  renderConversationList();
  if (active) {
    renderHeader();
    state.view.render();
    renderTyping();
    scheduleRead();
  }
}

function onTyping({ conversation, user }) {
  const thread = state.threads.get(conversation);
  if (!thread || user === state.me) return;
  thread.setTyping(user);
  if (conversation === state.activeId) renderTyping();
}

function renderTyping() {
  const thread = activeThread();
  const box = $("typing");
  clearTimeout(state.typingTimer);
  const typists = thread ? thread.typists() : [];
  if (!typists.length) {
    box.replaceChildren();
    return;
  }
  const text = typists.length > 3 ? "Several people are typing" : `${joinNames(typists)} ${typists.length === 1 ? "is" : "are"} typing`;
  box.replaceChildren(h("span", { class: "typing-dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")), `${text}…`);
  state.typingTimer = setTimeout(renderTyping, 1000);
}

function onRead({ conversation, user, seq }) {
  const summary = state.conversations.get(conversation);
  const thread = state.threads.get(conversation);
  if (!summary) return;
  if (user === state.me) {
    summary.read_seq = Math.max(summary.read_seq, seq);
    if (seq >= summary.last_seq) summary.unread = 0;
    renderConversationList();
  }
  if (thread && thread.markRead(user, seq) && conversation === state.activeId) state.view.render();
}

/** Whether the open conversation is on screen with its newest message in view. */
function readable() {
  return document.visibilityState === "visible" && state.view.atBottom();
}

function scheduleRead() {
  clearTimeout(state.readTimer);
  state.readTimer = setTimeout(markActiveRead, 250);
}

function markActiveRead() {
  const summary = state.conversations.get(state.activeId);
  const thread = activeThread();
  if (!summary || !thread || !thread.loaded || !readable()) return;
  const seq = Math.max(state.client.lastSeq(summary.id) || 0, thread.newestSeq());
  const hadUnread = summary.unread > 0;
  summary.unread = 0;
  if (hadUnread) renderConversationList();
  if (seq <= summary.read_seq) return;
  summary.read_seq = seq;
  state.client.read(summary.id, seq).catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// Composing and message actions

/** Sends a message; `attachments` are uploaded files `{id, name, mime, size}` (ids go out). */
function send(body, attachments = []) {
  const thread = activeThread();
  if (!thread) return;
  const replyTo = state.replyTo ? state.replyTo.id : null;
  const { clientMsgId, acked } = state.client.send(thread.id, body, {
    replyTo,
    attachments: attachments.map((file) => file.id),
  });
  acked.catch(() => {}); // failures arrive as `send_failed`
  thread.addPending({ clientMsgId, body, replyTo, attachments, ts: Date.now() });
  cancelReply();
  state.view.render({ stickToBottom: true });
}

function retrySend(pending) {
  const thread = activeThread();
  if (!thread) return;
  thread.pending.delete(pending.clientMsgId);
  const attachments = pending.attachments || [];
  const { acked } = state.client.send(thread.id, pending.body, {
    replyTo: pending.replyTo,
    attachments: attachments.map((file) => file.id),
    clientMsgId: pending.clientMsgId,
  });
  acked.catch(() => {});
  thread.addPending({ ...pending, failed: false, reason: undefined, ts: Date.now() });
  state.view.render({ stickToBottom: true });
}

/** Sending waits for the open conversation's uploads to finish. */
function renderSendButton() {
  const busy = state.uploads.busy();
  const button = $("send-btn");
  button.disabled = busy;
  button.title = busy ? "Wait for the upload to finish" : "";
}

function startReply(message) {
  state.replyTo = message;
  const preview = messagePreview(message);
  $("reply-author").textContent = message.author;
  $("reply-snippet").textContent = preview.length > 80 ? `${preview.slice(0, 80)}…` : preview;
  $("reply-preview").hidden = false;
  $("composer-input").focus();
}

function cancelReply() {
  state.replyTo = null;
  $("reply-preview").hidden = true;
}

function toggleReaction(message, emoji) {
  const users = message.reactions.get(emoji);
  const mine = users && users.has(state.me);
  const done = mine ? state.client.unreact(message.id, emoji) : state.client.react(message.id, emoji);
  done.catch(reportError);
}

function confirmDelete(message) {
  state.deleteTarget = message;
  $("delete-dialog").showModal();
}

function lastOwnMessage() {
  const thread = activeThread();
  if (!thread) return null;
  const sorted = thread.sorted();
  for (let i = sorted.length - 1; i >= 0; i -= 1) {
    if (sorted[i].author === state.me && !sorted[i].deleted) return sorted[i];
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Static chrome: composer, dialogs, buttons

function wireChrome() {
  const input = $("composer-input");
  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  };
  input.addEventListener("input", () => {
    grow();
    if (input.value.trim() && state.activeId) state.client.typing(state.activeId);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    } else if (event.key === "Escape" && state.replyTo) {
      event.preventDefault();
      cancelReply();
    } else if (event.key === "ArrowUp" && !input.value) {
      const last = lastOwnMessage();
      if (last) {
        event.preventDefault();
        state.view.startEdit(last);
      }
    }
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.uploads.busy()) {
      toast("Wait for the upload to finish, then send.");
      return;
    }
    const body = input.value.trim();
    const attachments = state.uploads.ready();
    if (!body && !attachments.length) return;
    send(body, attachments);
    state.uploads.sent();
    input.value = "";
    grow();
    input.focus();
  });
  wireAttachments(input);
  $("reply-cancel").addEventListener("click", () => {
    cancelReply();
    input.focus();
  });
  $("back-btn").addEventListener("click", closeConversation);
  $("signout-btn").addEventListener("click", () => signOut());
  $("messages").addEventListener("scroll", () => {
    if (state.view.atBottom()) scheduleRead();
  }, { passive: true });

  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }

  $("new-conversation-btn").addEventListener("click", () => {
    $("new-conversation-form").reset();
    setError($("new-conversation-error"), "");
    $("new-conversation-dialog").showModal();
  });
  $("new-conversation-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("new-conversation-error");
    const title = $("new-conversation-name").value.trim();
    const members = parseUserList($("new-conversation-members").value).filter((u) => u !== state.me);
    if (!title && !members.length) {
      setError(error, "Give it a title or at least one member.");
      return;
    }
    try {
      const conversation = await state.api.createConversation({ kind: "group", title, members });
      const summary = { ...conversation, role: "owner", read_seq: 0, unread: 0 };
      if (!state.conversations.has(conversation.id)) {
        state.conversations.set(conversation.id, summary);
        state.client.join(conversation.id, { since: conversation.last_seq }).catch(() => {});
      }
      $("new-conversation-dialog").close();
      renderConversationList();
      openConversation(conversation.id);
    } catch (err) {
      setError(error, describeError(err));
    }
  });

  $("add-member-btn").addEventListener("click", () => {
    $("add-member-form").reset();
    setError($("add-member-error"), "");
    $("add-member-dialog").showModal();
  });
  $("add-member-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("add-member-error");
    const [user] = parseUserList($("add-member-user").value);
    if (!user) {
      setError(error, "Type a user id.");
      return;
    }
    const thread = activeThread();
    if (thread && thread.members.has(user)) {
      setError(error, `${user} is already a member.`);
      return;
    }
    try {
      await state.api.addMember(state.activeId, user);
      $("add-member-dialog").close();
      toast(`Added ${user}.`);
    } catch (err) {
      setError(error, describeError(err));
    }
  });

  $("delete-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const target = state.deleteTarget;
    state.deleteTarget = null;
    $("delete-dialog").close();
    if (target) state.client.delete(target.id).catch(reportError);
  });
}

/** Files reach the tray three ways: the paperclip's file picker, a drop on the conversation, a paste. */
function wireAttachments(input) {
  const picker = $("attach-input");
  $("attach-btn").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    state.uploads.add([...picker.files]);
    picker.value = ""; // the same file may be picked again
    input.focus();
  });

  input.addEventListener("paste", (event) => {
    const files = [...((event.clipboardData && event.clipboardData.files) || [])];
    if (!files.length) return;
    // Copied text may come with a picture of itself (office apps): then the text is pasted too.
    if (!event.clipboardData.types.includes("text/plain")) event.preventDefault();
    state.uploads.add(files);
  });

  const chat = $("chat-main");
  const hint = $("drop-hint");
  const carriesFiles = (event) => Boolean(event.dataTransfer) && [...event.dataTransfer.types].includes("Files");
  // dragenter/dragleave fire for every child crossed: count them to know when the pointer left.
  let depth = 0;
  chat.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth += 1;
    hint.hidden = false;
  });
  chat.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  chat.addEventListener("dragleave", (event) => {
    if (!carriesFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) hint.hidden = true;
  });
  chat.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    hint.hidden = true;
    state.uploads.add([...event.dataTransfer.files]);
    input.focus();
  });
  // A file dropped anywhere else must not replace the page with itself.
  window.addEventListener("dragover", (event) => {
    if (!carriesFiles(event) || chat.contains(event.target)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "none";
  });
  window.addEventListener("drop", (event) => {
    if (carriesFiles(event)) event.preventDefault();
  });
}

// ---------------------------------------------------------------------------------------------

function boot() {
  const notice = takeNotice();
  if (notice) setTimeout(() => toast(notice, "error"), 100);
  const session = loadSession();
  if (session) startApp(session);
  else showSignIn(startApp);
}

boot();
