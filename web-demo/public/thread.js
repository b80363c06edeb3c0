// The page's model of one conversation: its messages (merged from REST pages and live events),
// the user's own unacknowledged messages, members with their read markers, and who is typing.
// No DOM here.

/** How long a `typing` notice shows (typists repeat it every 2 s). */
export const TYPING_TTL_MS = 4500;

/** A message as the page keeps it: reactions as emoji → Set of users. */
function normalize(message) {
  const reactions = new Map();
  for (const r of message.reactions || []) reactions.set(r.emoji, new Set(r.users));
  return {
    id: message.id,
    seq: message.seq,
    author: message.author,
    body: message.body,
    ts: message.ts,
    clientMsgId: message.client_msg_id,
    replyTo: message.reply_to || null,
    attachments: message.attachments || [],
    editedAt: message.edited_at || null,
    deleted: Boolean(message.deleted),
    reactions,
    version: 0,
  };
}

export class Thread {
  constructor(id) {
    this.id = id;
    /** id → message */
    this.messages = new Map();
    this.sortedCache = null;
    /** The newest page was loaded (the thread follows live events from then on). */
    this.loaded = false;
    /** REST loads in flight; live events are recorded meanwhile and re-applied after. */
    this.loading = 0;
    this.buffer = [];
    this.hasMoreBefore = true;
    /** client_msg_id → {clientMsgId, body, replyTo, ts, failed} */
    this.pending = new Map();
    /** user → {role, readSeq} */
    this.members = new Map();
    this.membersLoaded = false;
    /** user → expiry (ms epoch) */
    this.typing = new Map();
    /** Bumped on every change that the view must show. */
    this.revision = 0;
  }

  /** Messages, oldest first. */
  sorted() {
    if (!this.sortedCache) {
      this.sortedCache = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    }
    return this.sortedCache;
  }

  oldestSeq() {
    const sorted = this.sorted();
    return sorted.length ? sorted[0].seq : null;
  }

  newestSeq() {
    const sorted = this.sorted();
    return sorted.length ? sorted[sorted.length - 1].seq : 0;
  }

  #changed(message) {
    if (message) message.version += 1;
    this.revision += 1;
  }

  /**
   * Merges a REST page. Messages already known are kept as they are: they have followed every
   * live event since they arrived, which makes them at least as new as the page.
   */
  mergePage(messages) {
    for (const raw of messages) {
      if (this.messages.has(raw.id)) continue;
      this.messages.set(raw.id, normalize(raw));
      this.pending.delete(raw.client_msg_id);
    }
    this.sortedCache = null;
    this.#changed();
  }

  beginLoad() {
    this.loading += 1;
  }

  /** Ends a REST load: events that arrived meanwhile are applied again, in order (they are
   * idempotent), since the page may predate some of them. */
  endLoad() {
    this.loading = Math.max(0, this.loading - 1);
    if (this.loading === 0) {
      const buffered = this.buffer.splice(0);
      for (const frame of buffered) this.apply(frame);
    }
  }

  /** Whether live message events are kept (otherwise the newest page will bring them). */
  get following() {
    return this.loaded || this.loading > 0;
  }

  /** Applies a durable event. Returns true when the thread changed. */
  apply(frame) {
    if (this.loading > 0) this.buffer.push(frame);
    switch (frame.type) {
      case "message": {
        this.typing.delete(frame.author);
        this.pending.delete(frame.client_msg_id);
        if (!this.following || this.messages.has(frame.id)) {
          this.#changed();
          return true;
        }
        this.messages.set(frame.id, normalize(frame));
        this.sortedCache = null;
        this.#changed();
        return true;
      }
      case "message_edited": {
        const message = this.messages.get(frame.message);
        if (!message) return false;
        message.body = frame.body;
        message.editedAt = frame.ts;
        this.#changed(message);
        return true;
      }
      case "message_deleted": {
        const message = this.messages.get(frame.message);
        if (!message) return false;
        message.deleted = true;
        message.body = "";
        message.reactions.clear();
        this.#changed(message);
        return true;
      }
      case "reaction_added":
      case "reaction_removed": {
        const message = this.messages.get(frame.message);
        if (!message) return false;
        const users = message.reactions.get(frame.emoji) || new Set();
        if (frame.type === "reaction_added") users.add(frame.user);
        else users.delete(frame.user);
        if (users.size) message.reactions.set(frame.emoji, users);
        else message.reactions.delete(frame.emoji);
        this.#changed(message);
        return true;
      }
      case "member_added": {
        const known = this.members.get(frame.user);
        this.members.set(frame.user, { role: frame.role, readSeq: known ? known.readSeq : 0 });
        this.#changed();
        return true;
      }
      case "member_removed":
        this.members.delete(frame.user);
        this.#changed();
        return true;
      case "member_role_changed": {
        const member = this.members.get(frame.user);
        if (member) member.role = frame.role;
        this.#changed();
        return true;
      }
      default:
        return false;
    }
  }

  setMembers(members) {
    this.members.clear();
    for (const m of members) this.members.set(m.user, { role: m.role, readSeq: m.read_seq });
    this.membersLoaded = true;
    this.#changed();
  }

  /** A `read` frame: `user` has read up to `seq`. */
  markRead(user, seq) {
    const member = this.members.get(user);
    if (!member || seq <= member.readSeq) return false;
    member.readSeq = seq;
    this.#changed();
    return true;
  }

  /** A `typing` frame. */
  setTyping(user, now = Date.now()) {
    this.typing.set(user, now + TYPING_TTL_MS);
    this.revision += 1;
  }

  /** Users typing now (expired notices are forgotten). */
  typists(now = Date.now()) {
    for (const [user, until] of this.typing) if (until <= now) this.typing.delete(user);
    return [...this.typing.keys()].sort();
  }

  addPending(entry) {
    this.pending.set(entry.clientMsgId, { failed: false, ...entry });
    this.#changed();
  }

  /** An own message was acknowledged: it is no longer pending. */
  acked(clientMsgId) {
    if (this.pending.delete(clientMsgId)) this.#changed();
  }

  failPending(clientMsgId, reason) {
    const entry = this.pending.get(clientMsgId);
    if (!entry) return;
    entry.failed = true;
    entry.reason = reason;
    this.#changed();
  }

  /** Forgets everything but members (after a resume gap: the history is reloaded). */
  reset() {
    this.messages.clear();
    this.sortedCache = null;
    this.loaded = false;
    this.hasMoreBefore = true;
    this.buffer = [];
    this.#changed();
  }

  /**
   * Read receipts: message id → users (other than `me`) whose read marker is at that message,
   * i.e. the newest loaded message at or below their marker.
   */
  receipts(me) {
    const sorted = this.sorted();
    const result = new Map();
    if (!sorted.length) return result;
    for (const [user, member] of this.members) {
      if (user === me || !member.readSeq) continue;
      let lo = 0;
      let hi = sorted.length - 1;
      let found = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (sorted[mid].seq <= member.readSeq) {
          found = mid;
          lo = mid + 1;
        } else {
          hi = mid - 1;
        }
      }
      if (found < 0) continue;
      const id = sorted[found].id;
      if (!result.has(id)) result.set(id, []);
      result.get(id).push(user);
    }
    for (const users of result.values()) users.sort();
    return result;
  }
}
