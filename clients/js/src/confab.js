/**
 * confab.js: a small client library for the Confab chat server, for browsers and Node.js 20+
 * (the `@confab/client` package in clients/js; the server also serves this file as
 * `/confab.js`). No dependencies, no build step: `import { ConfabClient } from "./confab.js"`.
 * Types: confab.d.ts beside it (frames from protocol.d.ts, generated from the server's schema).
 * The protocol it speaks is docs/protocol.md.
 *
 * In Node.js (no global `WebSocket` before Node 22), pass an implementation and the server:
 * `new ConfabClient({ token, baseUrl: "https://chat.example", WebSocket: (await import("ws")).WebSocket })`.
 *
 * ```js
 * import { ConfabClient, devSignIn } from "./confab.js";
 *
 * const { token } = await devSignIn({ user: "alice" });    // dev servers only
 * const client = new ConfabClient({ token });              // or token: async () => fetchToken()
 * client.on("status", ({ status }) => badge.textContent = status);
 * client.on("message", (m) => render(m));                  // every durable event has its type
 * client.connect();
 *
 * const { conversations } = await client.api.listConversations();
 * await client.join(conversations[0].id);                  // rejoined with `since` after drops
 * const { clientMsgId, acked } = client.send(conversations[0].id, "hello");
 * await acked;                                             // resolves with the server's `ack`
 *
 * const file = await client.api.uploadFile(input.files[0], {
 *   conversation: conversations[0].id,
 *   onProgress: ({ loaded, total }) => (bar.value = loaded / total),
 * });
 * client.send(conversations[0].id, "the report", { attachments: [file.id] });
 * ```
 *
 * What it does for you:
 * - **Connects** to `/v1/ws?token=…` and waits for `welcome` before calling itself online.
 * - **Reconnects** after any drop with exponential backoff and full jitter (0.5 s doubling to
 *   30 s by default), at once when the browser comes back online. A socket closed with 4001
 *   (bad token), or refused while REST says the token is bad, is not retried: `unauthorized`.
 * - **Refreshes the token**: given `token` as a function, it asks it for a new token
 *   `refreshAheadMs` (60 s) before the connection's token expires and hands it to the server
 *   (`refresh`), so the connection is not closed at expiry; if that fails and the server closes
 *   with 4003 (token expired), it reconnects at once with a token from the function. With a
 *   fixed token string, 4003 ends the client like 4001.
 * - **Resumes**: every joined conversation is joined again with `since` = the last seq this
 *   client saw, so missed events are replayed in order. Durable events at or below that seq are
 *   dropped, so the app never sees one twice. When the server missed more than its replay cap
 *   (`joined.recovered: false`) the client emits `gap`: reload that conversation's history.
 * - **User events** (`conversation_added`, `conversation_removed`, `role_changed`,
 *   `read_moved`) arrive without joining anything. The client keeps the last `user_seq` it saw
 *   (from `welcome.user_seq` on); after a reconnect it sends `user_resume {since}` with it, so
 *   none is lost, and drops any it already saw, so none comes twice. `user_sync {resync: true}`
 *   means the server no longer had them all: re-read `api.listConversations()`.
 * - **Sends reliably**: `send()` gives each message a `client_msg_id` (`crypto.randomUUID()`)
 *   and keeps it in an outbox until its `ack`, resending after reconnects and on timeout; the
 *   server deduplicates by that id, so a retry never creates a second message.
 * - **Heartbeat**: an application-level `ping` every `pingIntervalMs` (at most the server's
 *   `heartbeat_ms`); no frame within `pongTimeoutMs` after it means a dead socket, which is
 *   dropped and reconnected.
 * - Commands (`edit`, `delete`, `react`, `unreact`, `read`, `leave`) return promises settled by
 *   the server's reply; issued while offline they wait and are sent after reconnecting.
 * - **REST** helpers on `client.api` (a {@link ConfabApi}): conversations, members, history
 *   paging, messages, reactions, media, search.
 * - **Uploads**: `client.api.uploadFile(file, {conversation, onProgress})` resolves with the
 *   server's MediaInfo; send its `id` in `attachments`. Files up to 5 MiB go up in one request,
 *   bigger ones in chunks with SHA-256s, resumed after network failures (only the missing chunks
 *   are sent again). Progress comes from XMLHttpRequest's upload events.
 * - **Media links**: `mediaLink(id)` (a signed link, no token in it, cached per file until
 *   shortly before it expires) for `<a href>`; `mediaThumbnail(id)` (a Blob, since thumbnails
 *   need the token) for `URL.createObjectURL`.
 *
 * Events (an `EventTarget`; `client.on(type, fn)` passes `event.detail` and returns an
 * unsubscribe function):
 * - `status` `{status, attempt?, delayMs?, reason?}`: `connecting`, `online`, `reconnecting`,
 *   `closed`, or `failed` (a connection could not even be attempted: the WebSocket
 *   implementation threw on a bad URL, say; an `error` `{code: "connect_failed"}` comes first,
 *   and the client does not retry).
 * - `welcome`, `joined`, `ack`, `typing`, `read`, `pong`: the server frames.
 * - one per durable event type (`message`, `message_edited`, `message_deleted`,
 *   `reaction_added`, `reaction_removed`, `member_added`, `member_removed`,
 *   `member_role_changed`, `conversation_updated`), plus `event` for each of them.
 * - one per user event type (`conversation_added`, `conversation_removed`, `role_changed`,
 *   `read_moved`), plus `user_event` for each of them; `user_sync` `{user_seq, resync}` after
 *   each `user_resume`.
 * - `gap` `{conversation, since, last_seq}`, `send_failed` `{clientMsgId, conversation, error}`,
 *   `join_failed` `{conversation, error}`, `error` (an `error` frame answering no command),
 *   `unauthorized`.
 */

/** Durable event types: each carries `conversation` and `seq`. */
export const DURABLE_EVENTS = Object.freeze([
  "message",
  "message_edited",
  "message_deleted",
  "reaction_added",
  "reaction_removed",
  "member_added",
  "member_removed",
  "member_role_changed",
  "conversation_updated",
]);

/** The user's own events (docs/protocol.md, "User events"): each carries `user_seq`. */
export const USER_EVENTS = Object.freeze(["conversation_added", "conversation_removed", "role_changed", "read_moved"]);

/** Error codes after which a send is worth retrying with the same `client_msg_id`. */
const RETRYABLE = new Set(["rate_limited", "internal", "unavailable", "timeout"]);

/** A failed REST call or command: `code` is one of docs/protocol.md's error codes. */
export class ConfabError extends Error {
  constructor(code, message, status) {
    super(message || code);
    this.name = "ConfabError";
    this.code = code;
    this.status = status;
  }
}

function trimSlash(url) {
  return String(url).replace(/\/+$/, "");
}

/**
 * The server's origin: `baseUrl`, or in a page the page's own. Outside a browser there is no
 * default: a clear error rather than requests to a guessed address.
 */
function resolveBaseUrl(baseUrl) {
  if (baseUrl === undefined || baseUrl === null || baseUrl === "") {
    if (typeof location === "undefined" || !location.origin || location.origin === "null") {
      throw new TypeError("confab: `baseUrl` is required outside a browser (the server's http(s) origin)");
    }
    return location.origin;
  }
  let url;
  try {
    url = new URL(String(baseUrl));
  } catch {
    throw new TypeError(`confab: \`baseUrl\` ${JSON.stringify(String(baseUrl))} is not an absolute URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`confab: \`baseUrl\` must be http: or https:, not ${url.protocol}`);
  }
  return trimSlash(url.href);
}

async function request(baseUrl, method, path, { token, body, signal } = {}) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(`${trimSlash(baseUrl)}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    throw fetchFailure(err);
  }
  return parseAnswer(response.status, await response.text(), response.headers);
}

/** What a fetch that threw means: the caller's abort, or an unreachable server. */
function fetchFailure(err) {
  if (err && err.name === "AbortError") return err;
  return new ConfabError("network", "the server cannot be reached", 0);
}

/**
 * The parsed JSON of an answer (null when empty), or its `{"error"}` thrown as a ConfabError;
 * a `Retry-After` (429, 503) becomes the error's `retryAfter`, in seconds.
 */
function parseAnswer(status, text, headers) {
  if (status === 204) return null;
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (status < 200 || status >= 300) {
    const error = json && json.error;
    const failure = new ConfabError(
      (error && error.code) || "internal",
      (error && error.message) || `HTTP ${status}`,
      status,
    );
    const retryAfter = Number.parseInt((headers && headers.get("retry-after")) || "", 10);
    if (Number.isFinite(retryAfter) && retryAfter >= 0) failure.retryAfter = retryAfter;
    throw failure;
  }
  return json;
}

/**
 * Development sign-in: a token for `user` signed with the server's generated key. The endpoint
 * exists only on a server running with its generated dev key on loopback (404 otherwise).
 * @returns {Promise<{token: string}>}
 */
export function devSignIn({ user, name, tenant, baseUrl }) {
  const body = { user };
  if (name) body.name = name;
  if (tenant) body.tenant = tenant;
  return request(resolveBaseUrl(baseUrl), "POST", "/v1/dev/token", { body });
}

/** The REST API under `/v1` (every method returns the parsed JSON answer). */
export class ConfabApi {
  /** @param {{baseUrl?: string, token: string | (() => string | Promise<string>)}} options */
  constructor({ baseUrl, token }) {
    this.baseUrl = resolveBaseUrl(baseUrl);
    this.token = token;
    /** media id → {promise, link}: signed links, reused until shortly before they expire */
    this.links = new Map();
  }

  async #auth() {
    return typeof this.token === "function" ? this.token() : this.token;
  }

  async call(method, path, body, { signal } = {}) {
    const token = await this.#auth();
    return request(this.baseUrl, method, path, { token, body, signal });
  }

  /**
   * Every conversation of the caller, most recently active first, following the pages.
   * @param {{kind?: "group"|"direct", archived?: boolean}} [filters]
   */
  async listConversations({ kind, archived } = {}) {
    const conversations = [];
    let cursor;
    do {
      const params = new URLSearchParams({ limit: "500" });
      if (kind) params.set("kind", kind);
      if (archived !== undefined) params.set("archived", String(archived));
      if (cursor) params.set("cursor", cursor);
      const page = await this.call("GET", `/v1/conversations?${params}`);
      conversations.push(...page.conversations);
      cursor = page.next_cursor;
    } while (cursor);
    return { conversations };
  }
  /** @param {{kind?: "group"|"direct", title?: string, members?: string[]}} options */
  createConversation({ kind = "group", title, members = [] } = {}) {
    const body = { kind, members };
    if (title) body.title = title;
    return this.call("POST", "/v1/conversations", body);
  }
  getConversation(id) {
    return this.call("GET", `/v1/conversations/${enc(id)}`);
  }
  updateConversation(id, changes) {
    return this.call("PATCH", `/v1/conversations/${enc(id)}`, changes);
  }
  listMembers(id) {
    return this.call("GET", `/v1/conversations/${enc(id)}/members`);
  }
  addMember(id, user, role) {
    const body = { user };
    if (role) body.role = role;
    return this.call("POST", `/v1/conversations/${enc(id)}/members`, body);
  }
  updateMember(id, user, role) {
    return this.call("PATCH", `/v1/conversations/${enc(id)}/members/${enc(user)}`, { role });
  }
  removeMember(id, user) {
    return this.call("DELETE", `/v1/conversations/${enc(id)}/members/${enc(user)}`);
  }
  markRead(id, seq) {
    return this.call("PUT", `/v1/conversations/${enc(id)}/read`, { seq });
  }
  /**
   * A page of messages, oldest first: the newest page by default, the page before seq
   * `before`, or the page after seq `after`. `{messages, has_more}`.
   */
  history(id, { before, after, limit } = {}) {
    const params = new URLSearchParams();
    if (before !== undefined && before !== null) params.set("before", String(before));
    if (after !== undefined && after !== null) params.set("after", String(after));
    if (limit) params.set("limit", String(limit));
    const query = params.toString();
    return this.call("GET", `/v1/conversations/${enc(id)}/messages${query ? `?${query}` : ""}`);
  }
  /** Sends over REST (for scripts and bots); the WebSocket `send` is the interactive path. */
  sendMessage(id, { body, clientMsgId = newClientMsgId(), replyTo, attachments }) {
    const payload = { client_msg_id: clientMsgId, body };
    if (replyTo) payload.reply_to = replyTo;
    if (attachments && attachments.length) payload.attachments = attachments;
    return this.call("POST", `/v1/conversations/${enc(id)}/messages`, payload);
  }
  getMessage(id) {
    return this.call("GET", `/v1/messages/${enc(id)}`);
  }
  editMessage(id, body) {
    return this.call("PATCH", `/v1/messages/${enc(id)}`, { body });
  }
  deleteMessage(id) {
    return this.call("DELETE", `/v1/messages/${enc(id)}`);
  }
  addReaction(id, emoji) {
    return this.call("POST", `/v1/messages/${enc(id)}/reactions`, { emoji });
  }
  removeReaction(id, emoji) {
    return this.call("DELETE", `/v1/messages/${enc(id)}/reactions/${enc(emoji)}`);
  }

  /**
   * Searches the messages of the caller's conversations (docs/protocol.md, "Search"):
   * `{hits: [{conversation, id, seq, author, ts, snippet}], next_cursor?, indexed_seq}`. The
   * `snippet` is HTML-escaped text with `<mark>` around matches: render it with search.js's
   * `snippetParts`, never as HTML. Past the per-user limit this rejects with `rate_limited`
   * and `retryAfter` (seconds). `waitFor` is `"<conversation>:<seq>"`.
   */
  searchMessages(q, { conversation, limit, cursor, sort, waitFor, signal } = {}) {
    const params = new URLSearchParams({ q });
    if (conversation) params.set("conversation", conversation);
    if (limit) params.set("limit", String(limit));
    if (cursor) params.set("cursor", cursor);
    if (sort) params.set("sort", sort);
    if (waitFor) params.set("wait_for", waitFor);
    return this.call("GET", `/v1/search/messages?${params}`, undefined, { signal });
  }
  /** Completions for a search box; a server without them answers 404 `not_found`. */
  searchSuggestions(prefix, { signal } = {}) {
    const params = new URLSearchParams({ prefix });
    return this.call("GET", `/v1/search/suggestions?${params}`, undefined, { signal });
  }

  /**
   * Uploads a file (a `File` or `Blob`) that members of `conversation` may then see; send its
   * `id` in a message's `attachments`. Files up to `singleMaxBytes` go up in one request, larger
   * ones as a resumable upload ({@link uploadResumable}). Resolves with the server's MediaInfo
   * `{id, name, content_type, size, sha256, …}`; rejects with a {@link ConfabError} (the
   * server's refusal: `too_large`, `unsupported_media_type`, `quota_exceeded`, …) or, after
   * `signal` aborts, with an `AbortError`.
   * @param {Blob} file
   * @param {object} [options]
   * @param {string} [options.conversation]
   * @param {(progress: {phase: "hashing"|"uploading", loaded: number, total: number}) => void}
   *   [options.onProgress] bytes sent so far (XMLHttpRequest's upload events in browsers).
   * @param {AbortSignal} [options.signal]
   * @param {number} [options.singleMaxBytes] the largest file sent in one request
   *   [{@link SINGLE_UPLOAD_MAX_BYTES}, the server's default chunk size].
   */
  uploadFile(file, options = {}) {
    const { singleMaxBytes = SINGLE_UPLOAD_MAX_BYTES } = options;
    return file.size <= singleMaxBytes ? this.uploadSingle(file, options) : this.uploadResumable(file, options);
  }

  /** `POST /v1/media`: the file in one multipart request. Options as {@link uploadFile}'s. */
  async uploadSingle(file, { conversation, onProgress, signal } = {}) {
    const form = new FormData();
    if (conversation) form.append("conversation", conversation);
    form.append("file", file, fileName(file));
    const total = file.size;
    const info = await sendWithProgress(`${this.baseUrl}/v1/media`, {
      method: "POST",
      token: await this.#auth(),
      body: form,
      signal,
      // The form is a little larger than the file (boundaries, the other field): scale.
      onProgress: onProgress && ((sent, of) => onProgress({ phase: "uploading", loaded: Math.round((sent / of) * total), total })),
    });
    if (onProgress) onProgress({ phase: "uploading", loaded: total, total });
    return info;
  }

  /**
   * A resumable upload: `POST /v1/media/uploads` (with the file's SHA-256 when it is at most
   * {@link WHOLE_HASH_MAX_BYTES}, so the server checks the assembled file), then each chunk with
   * its own `X-Chunk-SHA256`, then `complete`. After a network failure, a 5xx or a 429 it waits
   * (exponential backoff with jitter), asks the server which chunks are missing and sends only
   * those; it gives up after `retries` failures in a row, or at once when the server refuses
   * (then the upload is deleted rather than left to expire).
   *
   * Options as {@link uploadFile}'s, plus `retries` [8], `retryDelayMs` [1000] (the first
   * backoff cap, doubling up to `maxRetryDelayMs` [30000]) and `sleep(ms, signal)` (tests).
   */
  async uploadResumable(
    file,
    { conversation, onProgress, signal, retries = 8, retryDelayMs = 1000, maxRetryDelayMs = 30_000, sleep = abortableSleep } = {},
  ) {
    const total = file.size;
    const report = (phase, loaded) => onProgress && onProgress({ phase, loaded: Math.min(loaded, total), total });
    const start = { name: fileName(file), size: total };
    if (file.type) start.content_type = file.type;
    if (conversation) start.conversation = conversation;
    if (total <= WHOLE_HASH_MAX_BYTES) {
      report("hashing", 0);
      const sha256 = await sha256Hex(await file.arrayBuffer());
      if (sha256) start.sha256 = sha256;
    }
    throwIfAborted(signal);
    const created = await this.call("POST", "/v1/media/uploads", start, { signal });
    const path = `/v1/media/uploads/${enc(created.upload_id)}`;
    const chunks = planChunks(total, created.chunk_size);
    let missing = chunks.map((chunk) => chunk.n);
    let failures = 0;
    try {
      for (;;) {
        try {
          if (failures > 0) missing = (await this.call("GET", path, undefined, { signal })).missing_chunks;
          let sent = total - bytesOf(chunks, missing);
          report("uploading", sent);
          for (const n of missing) {
            const chunk = chunks[n];
            await this.#putChunk(`${path}/chunks/${n}`, file.slice(chunk.start, chunk.end), {
              signal,
              onProgress: (loaded) => report("uploading", sent + loaded),
            });
            sent += chunk.end - chunk.start;
            report("uploading", sent);
            failures = 0; // a chunk got through: the retries count again from zero
          }
          return await this.call("POST", `${path}/complete`, undefined, { signal });
        } catch (err) {
          if (!RESUMABLE.has(err && err.code) || failures >= retries) throw err;
          failures += 1;
          await sleep(backoffDelay(failures - 1, retryDelayMs, maxRetryDelayMs), signal);
        }
      }
    } catch (err) {
      // Nothing more will be sent: free the received chunks now rather than at expiry.
      this.call("DELETE", path).catch(() => {});
      throw err;
    }
  }

  async #putChunk(path, blob, { signal, onProgress }) {
    const bytes = await blob.arrayBuffer();
    const headers = { "content-type": "application/octet-stream" };
    const sha256 = await sha256Hex(bytes);
    if (sha256) headers["x-chunk-sha256"] = sha256;
    return sendWithProgress(`${this.baseUrl}${path}`, {
      method: "PUT",
      token: await this.#auth(),
      headers,
      body: bytes,
      signal,
      onProgress: onProgress && ((sent, of) => onProgress(Math.round((sent / of) * bytes.byteLength))),
    });
  }

  /** A file's MediaInfo (with its download count). */
  mediaInfo(id) {
    return this.call("GET", `/v1/media/${enc(id)}/meta`);
  }

  /** Deletes a file for everyone (its uploader, or an owner or admin of its conversation). */
  deleteMedia(id) {
    this.links.delete(id);
    return this.call("DELETE", `/v1/media/${enc(id)}`);
  }

  /**
   * A link to a file that works without a token, for `<a href>`, `<img src>` and players:
   * `{url, expiresAt}`, `url` absolute, `expiresAt` in ms. Each file's link is asked for once
   * and reused until a minute before it expires (concurrent callers share the request).
   */
  mediaLink(id) {
    const cached = this.links.get(id);
    if (cached && (!cached.link || fresh(cached.link))) return cached.promise;
    const entry = { link: null, promise: null };
    entry.promise = this.call("POST", `/v1/media/${enc(id)}/signed`).then(
      ({ url, expires_at: expiresAt }) => {
        entry.link = { url: new URL(url, `${this.baseUrl}/`).href, expiresAt: expiresAt * 1000 };
        return entry.link;
      },
      (err) => {
        if (this.links.get(id) === entry) this.links.delete(id);
        throw err;
      },
    );
    this.links.set(id, entry);
    return entry.promise;
  }

  /** The cached link of {@link mediaLink} when it is still good for a minute, else null. */
  cachedMediaLink(id) {
    const cached = this.links.get(id);
    return cached && cached.link && fresh(cached.link) ? cached.link : null;
  }

  /**
   * The thumbnail of an image file (PNG, JPEG, GIF, WebP; see {@link THUMBNAIL_TYPES}) as a
   * Blob: it needs the token, so it is fetched rather than linked (`URL.createObjectURL`).
   */
  async mediaThumbnail(id, { signal } = {}) {
    const token = await this.#auth();
    let response;
    try {
      response = await fetch(`${this.baseUrl}/v1/media/${enc(id)}/thumbnail`, {
        headers: { authorization: `Bearer ${token}` },
        signal,
      });
    } catch (err) {
      throw fetchFailure(err);
    }
    if (!response.ok) parseAnswer(response.status, await response.text(), response.headers);
    return response.blob();
  }
}

// ---------------------------------------------------------------------------------------------
// Media helpers

/**
 * Files up to this size go up in one request, larger ones as a resumable upload: the server's
 * default chunk size (`media_chunk_bytes`, 5 MiB), so that one request never carries more than a
 * chunk would.
 */
export const SINGLE_UPLOAD_MAX_BYTES = 5 * 1024 * 1024;
/**
 * Resumable uploads of files up to this size announce the whole file's SHA-256; hashing reads
 * the file into memory at once (`crypto.subtle.digest` does not stream), so larger files rely
 * on their chunks' hashes only.
 */
export const WHOLE_HASH_MAX_BYTES = 100 * 1024 * 1024;
/** The types the server makes thumbnails of. */
export const THUMBNAIL_TYPES = Object.freeze(["image/png", "image/jpeg", "image/gif", "image/webp"]);
/** A signed link is replaced when it has less than this left. */
const LINK_MARGIN_MS = 60_000;
/** Errors after which a resumable upload asks what is missing and carries on. */
const RESUMABLE = new Set(["network", "timeout", "internal", "unavailable", "rate_limited", "conflict"]);

/** Whether a file of this type has a thumbnail. */
export function hasThumbnail(mime) {
  return THUMBNAIL_TYPES.includes(String(mime).split(";")[0].trim().toLowerCase());
}

/**
 * The chunks of a resumable upload of `size` bytes: `[{n, start, end}]`, every one `chunkSize`
 * bytes but the last.
 */
export function planChunks(size, chunkSize) {
  if (!(chunkSize > 0)) throw new RangeError(`bad chunk size ${chunkSize}`);
  const chunks = [];
  for (let n = 0; n * chunkSize < size; n += 1) {
    chunks.push({ n, start: n * chunkSize, end: Math.min(size, (n + 1) * chunkSize) });
  }
  return chunks;
}

/** The bytes in the chunks numbered `numbers`. */
function bytesOf(chunks, numbers) {
  return numbers.reduce((sum, n) => sum + (chunks[n] ? chunks[n].end - chunks[n].start : 0), 0);
}

/**
 * SHA-256 of the bytes, in hex; undefined where the browser has no `crypto.subtle` (pages
 * served over plain http from another host than localhost), since the hashes are optional.
 */
export async function sha256Hex(bytes) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) return undefined;
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fileName(file) {
  return (typeof file.name === "string" && file.name) || "file";
}

function fresh(link) {
  return link.expiresAt - LINK_MARGIN_MS > Date.now();
}

function abortError(signal) {
  return (signal && signal.reason) || new DOMException("The upload was cancelled.", "AbortError");
}

function throwIfAborted(signal) {
  if (signal && signal.aborted) throw abortError(signal);
}

function abortableSleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(abortError(signal));
      return;
    }
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(abortError(signal));
      }, { once: true });
    }
  });
}

/**
 * Sends one request body, reporting `onProgress(sent, total)` as it goes, and answers like
 * {@link request}. Browsers get XMLHttpRequest (fetch reports no upload progress); elsewhere
 * (Node, workers without XHR) fetch, with one progress report at the end.
 */
function sendWithProgress(url, { method, token, headers = {}, body, signal, onProgress }) {
  const all = { accept: "application/json", ...headers };
  if (token) all.authorization = `Bearer ${token}`;
  if (typeof XMLHttpRequest === "undefined") {
    return (async () => {
      let response;
      try {
        response = await fetch(url, { method, headers: all, body, signal });
      } catch (err) {
        throw fetchFailure(err);
      }
      const answer = parseAnswer(response.status, await response.text(), response.headers);
      if (onProgress) onProgress(1, 1);
      return answer;
    })();
  }
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(abortError(signal));
      return;
    }
    const xhr = new XMLHttpRequest();
    const onAbort = () => xhr.abort();
    const settle = (fn) => {
      if (signal) signal.removeEventListener("abort", onAbort);
      fn();
    };
    xhr.open(method, url);
    for (const [name, value] of Object.entries(all)) xhr.setRequestHeader(name, value);
    if (onProgress) {
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable && event.total > 0) onProgress(event.loaded, event.total);
      };
    }
    xhr.onload = () =>
      settle(() => {
        try {
          resolve(parseAnswer(xhr.status, xhr.responseText));
        } catch (err) {
          reject(err);
        }
      });
    xhr.onerror = () => settle(() => reject(new ConfabError("network", "the server cannot be reached", 0)));
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => settle(() => reject(abortError(signal)));
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
    xhr.send(body);
  });
}

function enc(part) {
  return encodeURIComponent(part);
}

/** A fresh `client_msg_id`. */
export function newClientMsgId() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // Insecure contexts (plain http on a LAN address) lack randomUUID.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Exponential backoff with full jitter: a random delay in [cap/2, cap], cap doubling. */
export function backoffDelay(attempt, initialMs, maxMs, random = Math.random) {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(cap / 2 + random() * (cap / 2));
}

const DEFAULTS = {
  initialBackoffMs: 500,
  maxBackoffMs: 30_000,
  pingIntervalMs: 20_000,
  pongTimeoutMs: 8_000,
  sendRetryMs: 10_000,
  connectTimeoutMs: 10_000,
  refreshAheadMs: 60_000,
  refreshFloorMs: 10_000,
};

/** The `exp` of a JWT (seconds since the epoch), or null if it has none or is not a JWT. */
export function tokenExpiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const { exp } = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}

/** A Confab WebSocket client that survives reconnects. See the top of this file. */
export class ConfabClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string | (() => string | Promise<string>)} options.token the JWT, or a function
   *   called before each connection attempt (to refresh it).
   * @param {string} [options.baseUrl] the server's http(s) origin [default: this page's;
   *   required outside a browser].
   * @param {typeof WebSocket} [options.WebSocket] the WebSocket implementation [default:
   *   `globalThis.WebSocket`]; in Node.js 20, `ws`'s. Without either the constructor throws.
   * @param {number} [options.userSince] the last `user_seq` an earlier run saw: the first
   *   connection resumes the user events after it too [default: start from `welcome.user_seq`].
   * @param {number} [options.initialBackoffMs] first reconnect delay cap [500].
   * @param {number} [options.maxBackoffMs] largest reconnect delay [30000].
   * @param {number} [options.pingIntervalMs] application ping period [20000].
   * @param {number} [options.pongTimeoutMs] silence after a ping that means a dead socket [8000].
   * @param {number} [options.sendRetryMs] resend an unacked message after this long [10000].
   * @param {number} [options.refreshAheadMs] with a token function, refresh the connection's
   *   token this long before it expires [60000].
   * @param {number} [options.refreshFloorMs] the shortest time between two refreshes [10000].
   */
  constructor(options) {
    super();
    this.options = { ...DEFAULTS, ...options };
    this.WebSocket = this.options.WebSocket || globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new TypeError(
        "confab: no WebSocket implementation: pass one as the `WebSocket` option " +
          "(in Node.js 20: `WebSocket` from the `ws` package)",
      );
    }
    this.baseUrl = resolveBaseUrl(this.options.baseUrl);
    this.api = new ConfabApi({ baseUrl: this.baseUrl, token: () => this.#token() });
    /** `idle`, `connecting`, `online`, `reconnecting` or `closed`. */
    this.status = "idle";
    /** The `welcome` frame of the current connection. */
    this.welcome = null;
    this.ws = null;
    this.attempt = 0;
    this.failuresBeforeWelcome = 0;
    this.nextRef = 1;
    /** conversation → {lastSeq, waiters: [{resolve, reject}]} */
    this.rooms = new Map();
    /** client_msg_id → outbox entry */
    this.outbox = new Map();
    /** ref → pending command */
    this.pending = new Map();
    this.lastTyping = new Map();
    this.timers = { reconnect: null, ping: null, pong: null, connect: null, refresh: null };
    /** The last `user_seq` seen (null before the first welcome). */
    this.userSeq = Number.isInteger(this.options.userSince) ? this.options.userSince : null;
    /** Whether a `user_resume` awaits its `user_sync` (events past a gap wait for it). */
    this.userResuming = false;
    /** The token the current connection was opened or last refreshed with. */
    this.connectionToken = null;
    this.stopped = false;
    this.onOnline = () => {
      if (this.status === "reconnecting") this.#reconnectNow();
    };
    this.onVisible = () => {
      if (document.visibilityState === "visible" && this.status === "online") this.#sendPing();
    };
  }

  /** `client.on("message", (frame) => …)`; returns a function that unsubscribes. */
  on(type, listener) {
    const wrapped = (event) => listener(event.detail);
    this.addEventListener(type, wrapped);
    return () => this.removeEventListener(type, wrapped);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setStatus(status, extra = {}) {
    this.status = status;
    this.#emit("status", { status, ...extra });
  }

  async #token() {
    const { token } = this.options;
    return typeof token === "function" ? token() : token;
  }

  /** Opens the connection (and keeps it open until {@link close}). */
  connect() {
    this.stopped = false;
    if (typeof window !== "undefined") {
      window.addEventListener("online", this.onOnline);
      document.addEventListener("visibilitychange", this.onVisible);
    }
    if (!this.ws && !this.timers.reconnect) this.#open();
  }

  /** Closes the connection for good; unacked sends and pending commands are rejected. */
  close() {
    this.stopped = true;
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this.onOnline);
      document.removeEventListener("visibilitychange", this.onVisible);
    }
    this.#clearTimers();
    if (this.ws) {
      this.#detach(this.ws);
      try {
        this.ws.close(1000, "bye");
      } catch {
        // already closing
      }
      this.ws = null;
    }
    this.#rejectAll(new ConfabError("closed", "the client was closed"));
    this.#setStatus("closed");
  }

  /** Settles every unacked send, pending command and join with `error` (nothing will send them). */
  #rejectAll(error) {
    for (const entry of this.outbox.values()) entry.reject(error);
    this.outbox.clear();
    for (const entry of this.pending.values()) entry.reject(error);
    this.pending.clear();
    for (const room of this.rooms.values()) room.waiters.forEach((w) => w.reject(error));
    this.rooms.clear();
  }

  /** Whether the socket is open and welcomed. */
  get online() {
    return this.status === "online";
  }

  async #open() {
    this.timers.reconnect = null;
    this.#setStatus(this.attempt === 0 ? "connecting" : "reconnecting", { attempt: this.attempt });
    let token;
    try {
      token = await this.#token();
    } catch {
      this.#scheduleReconnect();
      return;
    }
    if (this.stopped) return;
    this.connectionToken = token;
    const url = new URL("/v1/ws", this.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", token);
    let ws;
    try {
      ws = new this.WebSocket(url.href);
    } catch (err) {
      // Not a network failure (those close the socket later): the same call would throw again.
      this.#fail("connect_failed", `cannot open a WebSocket to ${url.origin}: ${err?.message ?? err}`);
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => this.#onFrame(ws, event.data);
    ws.onclose = (event) => this.#onClose(ws, event.code);
    ws.onerror = () => {
      // `close` follows; nothing to do here (and nothing worth logging).
    };
    // A handshake that hangs (half-open network) counts as a failure.
    this.timers.connect = setTimeout(() => {
      if (this.ws === ws && !this.welcome) this.#drop(ws);
    }, this.options.connectTimeoutMs);
  }

  #detach(ws) {
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
  }

  /** Gives up on a socket now (dead or hung) and reconnects. */
  #drop(ws) {
    if (this.ws !== ws) return;
    this.#detach(ws);
    try {
      ws.close(4000, "dead connection");
    } catch {
      // already closed
    }
    this.#onClose(ws, 1006);
  }

  #onClose(ws, code) {
    if (this.ws !== ws) return;
    this.ws = null;
    const wasWelcomed = Boolean(this.welcome);
    this.welcome = null;
    this.#clearTimers();
    if (this.stopped) return;
    // 4003: the token expired. A token function gives a new one: reconnect at once.
    if (code === 4001 || (code === 4003 && typeof this.options.token !== "function")) {
      this.#unauthorized();
      return;
    }
    if (code === 4003) {
      this.attempt = 0;
      this.#reconnectNow();
      return;
    }
    if (wasWelcomed) {
      this.failuresBeforeWelcome = 0;
    } else {
      this.failuresBeforeWelcome += 1;
      // A refused upgrade (HTTP 401) looks like any other failure to a browser: ask REST.
      if (this.failuresBeforeWelcome === 2) this.#checkToken();
    }
    this.#scheduleReconnect();
  }

  async #checkToken() {
    try {
      await this.api.listConversations();
    } catch (err) {
      if (err instanceof ConfabError && err.code === "unauthorized" && !this.stopped) {
        this.#unauthorized();
      }
    }
  }

  #unauthorized() {
    this.stopped = true;
    this.#clearTimers();
    if (this.ws) {
      this.#detach(this.ws);
      this.ws.close();
      this.ws = null;
    }
    this.#setStatus("closed", { reason: "unauthorized" });
    this.#emit("unauthorized", {});
  }

  /** Gives up for good on an error that retrying cannot fix: `error`, then status `failed`. */
  #fail(code, message) {
    this.stopped = true;
    this.#clearTimers();
    this.ws = null;
    this.#rejectAll(new ConfabError(code, message));
    this.#emit("error", { type: "error", code, message });
    this.#setStatus("failed", { reason: code, message });
  }

  #scheduleReconnect() {
    if (this.stopped || this.timers.reconnect) return;
    const delayMs = backoffDelay(
      this.attempt,
      this.options.initialBackoffMs,
      this.options.maxBackoffMs,
    );
    this.attempt += 1;
    this.#setStatus("reconnecting", { attempt: this.attempt, delayMs, retryAt: Date.now() + delayMs });
    this.timers.reconnect = setTimeout(() => this.#open(), delayMs);
  }

  #reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = null;
    this.attempt = 0;
    this.#open();
  }

  #clearTimers() {
    for (const key of Object.keys(this.timers)) {
      clearTimeout(this.timers[key]);
      this.timers[key] = null;
    }
    for (const entry of this.outbox.values()) {
      clearTimeout(entry.timer);
      entry.timer = null;
    }
  }

  #write(frame) {
    // 1 is OPEN in every implementation (the browser's, `ws`, undici's).
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  #ref(prefix) {
    return `${prefix}${this.nextRef++}`;
  }

  #onFrame(ws, data) {
    if (this.ws !== ws) return;
    // Any frame proves the socket alive.
    clearTimeout(this.timers.pong);
    this.timers.pong = null;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== "string") return;
    switch (frame.type) {
      case "welcome":
        this.#onWelcome(frame);
        return;
      case "joined":
        this.#onJoined(frame);
        return;
      case "ack":
        this.#onAck(frame);
        return;
      case "error":
        this.#onError(frame);
        return;
      case "ok":
      case "left":
      case "pong": {
        const entry = frame.ref && this.pending.get(frame.ref);
        if (entry) {
          this.pending.delete(frame.ref);
          entry.resolve(frame);
        }
        if (frame.type === "pong") this.#emit("pong", frame);
        return;
      }
      default:
        break;
    }
    if (DURABLE_EVENTS.includes(frame.type)) {
      this.#onDurable(frame);
      return;
    }
    if (USER_EVENTS.includes(frame.type)) {
      this.#onUserEvent(frame);
      return;
    }
    if (frame.type === "user_sync") {
      this.#onUserSync(frame);
      return;
    }
    // Ephemeral frames (`typing`, `read`) and anything newer than this library.
    this.#emit(frame.type, frame);
  }

  #onWelcome(frame) {
    clearTimeout(this.timers.connect);
    this.timers.connect = null;
    this.welcome = frame;
    this.attempt = 0;
    this.failuresBeforeWelcome = 0;
    this.#setStatus("online");
    this.#emit("welcome", frame);
    this.#scheduleRefresh();
    this.#startUserStream(frame);
    for (const [conversation, room] of this.rooms) this.#sendJoin(conversation, room);
    for (const entry of this.outbox.values()) this.#transmit(entry);
    for (const entry of this.pending.values()) {
      if (entry.frame.type === "ping") {
        this.pending.delete(entry.frame.ref);
        entry.reject(new ConfabError("disconnected", "the connection dropped"));
      } else {
        this.#write(entry.frame);
      }
    }
    this.#schedulePing();
  }

  #schedulePing() {
    clearTimeout(this.timers.ping);
    const serverBeat = (this.welcome && this.welcome.heartbeat_ms) || Infinity;
    const every = Math.min(this.options.pingIntervalMs, serverBeat);
    this.timers.ping = setTimeout(() => this.#sendPing(), every);
  }

  #sendPing() {
    const ws = this.ws;
    if (!ws || !this.welcome) return;
    this.#write({ type: "ping" });
    clearTimeout(this.timers.pong);
    this.timers.pong = setTimeout(() => this.#drop(ws), this.options.pongTimeoutMs);
    this.#schedulePing();
  }

  /** Measures a round trip: resolves with the milliseconds a `ping` took to be answered. */
  ping() {
    const started = performance.now();
    return this.#command({ type: "ping" }).then(() => performance.now() - started);
  }

  #onDurable(frame) {
    const room = this.rooms.get(frame.conversation);
    if (!room) return;
    if (room.lastSeq !== null && frame.seq <= room.lastSeq) return; // already seen
    if (room.lastSeq !== null && frame.seq > room.lastSeq + 1) {
      // Never expected (the server is gapless per connection); resync instead of guessing.
      this.#sendJoin(frame.conversation, room);
      return;
    }
    room.lastSeq = frame.seq;
    if (frame.type === "member_removed" && this.welcome && frame.user === this.welcome.user) {
      this.rooms.delete(frame.conversation);
    }
    this.#emit(frame.type, frame);
    this.#emit("event", frame);
  }

  /**
   * The user stream of a new connection: it starts after `welcome.user_seq`; when this client
   * saw another one (an earlier connection, or `userSince`), `user_resume` asks for the events
   * after that instead.
   */
  #startUserStream(welcome) {
    this.userResuming = false;
    if (!Number.isInteger(welcome.user_seq)) return; // a server without user events
    if (this.userSeq === null) {
      this.userSeq = welcome.user_seq;
      return;
    }
    this.#sendUserResume();
  }

  #sendUserResume() {
    this.userResuming = true;
    this.#write({ type: "user_resume", ref: this.#ref("u"), since: this.userSeq });
  }

  #onUserEvent(frame) {
    if (this.userSeq === null) this.userSeq = frame.user_seq - 1;
    if (frame.user_seq <= this.userSeq) return; // already seen
    if (frame.user_seq > this.userSeq + 1) {
      // Live events overtook a resume (they are sent again after it), or an unexpected gap.
      if (!this.userResuming) this.#sendUserResume();
      return;
    }
    this.userSeq = frame.user_seq;
    this.#emit(frame.type, frame);
    this.#emit("user_event", frame);
  }

  #onUserSync(frame) {
    this.userResuming = false;
    if (frame.resync || this.userSeq === null || frame.user_seq > this.userSeq) {
      this.userSeq = frame.user_seq;
    }
    this.#emit("user_sync", frame);
  }

  /** The last `user_seq` this client saw (keep it to resume a later run: `userSince`). */
  lastUserSeq() {
    return this.userSeq;
  }

  /**
   * Joins a conversation and keeps it joined across reconnects (each time with `since` = the
   * last seq seen). Resolves with the `joined` frame.
   * @param {string} conversation
   * @param {{since?: number}} [options] replay events after this seq on the first join too.
   */
  join(conversation, { since } = {}) {
    let room = this.rooms.get(conversation);
    if (!room) {
      room = { lastSeq: Number.isInteger(since) ? since : null, waiters: [] };
      this.rooms.set(conversation, room);
    }
    const joined = new Promise((resolve, reject) => room.waiters.push({ resolve, reject }));
    if (this.online) this.#sendJoin(conversation, room);
    return joined;
  }

  #sendJoin(conversation, room) {
    const ref = this.#ref("j");
    room.ref = ref;
    room.since = room.lastSeq;
    const frame = { type: "join", ref, conversation };
    if (room.lastSeq !== null) frame.since = room.lastSeq;
    this.#write(frame);
  }

  #onJoined(frame) {
    const room = this.rooms.get(frame.conversation);
    if (!room) return;
    if (room.lastSeq === null) {
      room.lastSeq = frame.last_seq;
    } else if (!frame.recovered) {
      const since = room.lastSeq;
      room.lastSeq = frame.last_seq;
      this.#emit("gap", { conversation: frame.conversation, since, last_seq: frame.last_seq });
    }
    const waiters = room.waiters.splice(0);
    waiters.forEach((w) => w.resolve(frame));
    this.#emit("joined", frame);
  }

  /** Stops receiving a conversation's events. */
  leave(conversation) {
    this.rooms.delete(conversation);
    return this.#command({ type: "leave", conversation });
  }

  /** The last seq this client saw in a joined conversation (or null). */
  lastSeq(conversation) {
    const room = this.rooms.get(conversation);
    return room ? room.lastSeq : null;
  }

  /**
   * Sends a message; retried with the same `client_msg_id` until acknowledged.
   * @returns {{clientMsgId: string, acked: Promise<object>}} `acked` resolves with the `ack`
   *   frame, or rejects with a {@link ConfabError} the server answered (not retryable).
   */
  send(conversation, body, { replyTo, attachments, clientMsgId = newClientMsgId() } = {}) {
    let resolve;
    let reject;
    const acked = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const frame = { type: "send", conversation, client_msg_id: clientMsgId, body };
    if (replyTo) frame.reply_to = replyTo;
    if (attachments && attachments.length) frame.attachments = attachments;
    const entry = { frame, clientMsgId, conversation, resolve, reject, attempts: 0, timer: null };
    this.outbox.set(clientMsgId, entry);
    if (this.online) this.#transmit(entry);
    return { clientMsgId, acked };
  }

  /** Messages sent but not acknowledged yet. */
  unacked() {
    return [...this.outbox.values()].map((e) => ({ ...e.frame }));
  }

  #transmit(entry) {
    clearTimeout(entry.timer);
    entry.timer = null;
    entry.ref = this.#ref("s");
    entry.attempts += 1;
    if (!this.#write({ ...entry.frame, ref: entry.ref })) return;
    entry.timer = setTimeout(() => {
      if (this.outbox.has(entry.clientMsgId) && this.online) this.#transmit(entry);
    }, this.options.sendRetryMs);
  }

  #onAck(frame) {
    const entry = this.outbox.get(frame.client_msg_id);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.outbox.delete(frame.client_msg_id);
    entry.resolve(frame);
    this.#emit("ack", frame);
  }

  #onError(frame) {
    const error = new ConfabError(frame.code, frame.message);
    if (frame.ref) {
      for (const entry of this.outbox.values()) {
        if (entry.ref !== frame.ref) continue;
        clearTimeout(entry.timer);
        if (RETRYABLE.has(frame.code)) {
          const delay = backoffDelay(entry.attempts, 1000, 30_000);
          entry.timer = setTimeout(() => this.online && this.#transmit(entry), delay);
        } else {
          this.outbox.delete(entry.clientMsgId);
          entry.reject(error);
          this.#emit("send_failed", {
            clientMsgId: entry.clientMsgId,
            conversation: entry.conversation,
            error,
          });
        }
        return;
      }
      for (const [conversation, room] of this.rooms) {
        if (room.ref !== frame.ref) continue;
        this.rooms.delete(conversation);
        room.waiters.splice(0).forEach((w) => w.reject(error));
        this.#emit("join_failed", { conversation, error });
        return;
      }
      const pending = this.pending.get(frame.ref);
      if (pending) {
        this.pending.delete(frame.ref);
        pending.reject(error);
        return;
      }
    }
    this.#emit("error", frame);
  }

  /** With a token function: a `refresh` shortly before the connection's token expires. */
  #scheduleRefresh() {
    clearTimeout(this.timers.refresh);
    this.timers.refresh = null;
    const exp = tokenExpiry(this.connectionToken ?? "");
    if (exp === null || typeof this.options.token !== "function") return;
    // Not more often than that, should the function keep returning the same token.
    const { refreshAheadMs, refreshFloorMs } = this.options;
    const inMs = Math.max(refreshFloorMs, exp * 1000 - Date.now() - refreshAheadMs);
    this.timers.refresh = setTimeout(() => this.#refresh(), inMs);
  }

  async #refresh() {
    this.timers.refresh = null;
    const ws = this.ws;
    try {
      const token = await this.#token();
      if (this.ws !== ws || !this.online) return; // the next welcome schedules again
      await this.#command({ type: "refresh", token });
      if (this.ws === ws) this.connectionToken = token;
    } catch (err) {
      // Refused or no token now: try again later; at expiry the server closes with 4003 and
      // the client reconnects with a new token.
      this.#emit("error", { type: "error", code: err?.code ?? "refresh_failed", message: String(err?.message ?? err) });
    }
    if (this.ws === ws && this.online) this.#scheduleRefresh();
  }

  #command(frame) {
    const ref = this.#ref("c");
    const full = { ...frame, ref };
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { frame: full, resolve, reject });
      if (this.online) this.#write(full);
    });
  }

  /** Replaces the body of one's own message. Resolves with `{seq}`. */
  edit(message, body) {
    return this.#command({ type: "edit", message, body });
  }

  /** Soft-deletes a message. */
  delete(message) {
    return this.#command({ type: "delete", message });
  }

  /** Adds a reaction (no `seq` in the reply when it was already there). */
  react(message, emoji) {
    return this.#command({ type: "react", message, emoji });
  }

  /** Removes one's reaction. */
  unreact(message, emoji) {
    return this.#command({ type: "unreact", message, emoji });
  }

  /** Moves the read marker forward to `seq`. */
  read(conversation, seq) {
    return this.#command({ type: "read", conversation, seq });
  }

  /**
   * Tells the others this user is typing. Call it on every keystroke: it is sent at most once
   * per `intervalMs`, only while online, and never queued.
   */
  typing(conversation, intervalMs = 2000) {
    if (!this.online || !this.rooms.has(conversation)) return;
    const now = Date.now();
    const last = this.lastTyping.get(conversation) || 0;
    if (now - last < intervalMs) return;
    this.lastTyping.set(conversation, now);
    this.#write({ type: "typing", conversation });
  }
}
