// Types of src/confab.js, the Confab client library. The WebSocket frames come from
// protocol.d.ts, which scripts/generate-types.mjs generates from the server's JSON Schema (so a
// frame field renamed in the protocol crate changes them); this file declares the library's own
// API. The REST results that are not frames follow the OpenAPI document (/v1/openapi.json).

import type {
  ClientFrame,
  ConversationKind,
  ConversationSummary,
  ErrorCode,
  Message,
  Role,
  ServerFrame,
} from "./protocol.js";

export type * from "./protocol.js";

/** The server frame whose `type` is `T`. */
export type ServerFrameOf<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
/** The client frame whose `type` is `T`. */
export type ClientFrameOf<T extends ClientFrame["type"]> = Extract<ClientFrame, { type: T }>;

export type WelcomeFrame = ServerFrameOf<"welcome">;
export type JoinedFrame = ServerFrameOf<"joined">;
export type AckFrame = ServerFrameOf<"ack">;
export type OkFrame = ServerFrameOf<"ok">;
export type ErrorFrame = ServerFrameOf<"error">;
export type UserSyncFrame = ServerFrameOf<"user_sync">;

/** Durable conversation events: each carries `conversation` and `seq`. */
export type DurableEventType =
  | "message"
  | "message_edited"
  | "message_deleted"
  | "reaction_added"
  | "reaction_removed"
  | "member_added"
  | "member_removed"
  | "member_role_changed"
  | "conversation_updated";
export type DurableEvent = ServerFrameOf<DurableEventType>;

/** The user's own events: each carries `user_seq`. */
export type UserEventType = "conversation_added" | "conversation_removed" | "role_changed" | "read_moved";
export type UserEvent = ServerFrameOf<UserEventType>;

export declare const DURABLE_EVENTS: readonly DurableEventType[];
export declare const USER_EVENTS: readonly UserEventType[];

/** A failed REST call or command; `code` is one of docs/protocol.md's error codes, or one of
 * the client's own (`network`, `closed`, `disconnected`, `connect_failed`). */
export declare class ConfabError extends Error {
  constructor(code: string, message?: string, status?: number);
  readonly code: ErrorCode | "network" | "closed" | "disconnected" | "connect_failed" | (string & {});
  /** The HTTP status of a REST failure (0: no answer). */
  readonly status?: number;
  /** Seconds, from `Retry-After` (429, 503). */
  retryAfter?: number;
}

/** A token, or a function giving a fresh one (called before each connection and refresh). */
export type TokenSource = string | (() => string | Promise<string>);

/** What the client needs of a WebSocket implementation (the browser's, `ws`, undici's). */
export interface WebSocketLike {
  readonly readyState: number;
  // Set by the client; `any` so that every implementation's own event types fit.
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ConfabClientOptions {
  /** The JWT, or a function called before each connection attempt (to refresh it). */
  token: TokenSource;
  /** The server's http(s) origin [default: the page's; required outside a browser]. */
  baseUrl?: string;
  /** The WebSocket implementation [default: `globalThis.WebSocket`; in Node.js 20, pass `ws`'s]. */
  WebSocket?: WebSocketConstructor;
  /** The last `user_seq` an earlier run saw: the first connection resumes after it. */
  userSince?: number;
  /** First reconnect delay cap, ms [500]. */
  initialBackoffMs?: number;
  /** Largest reconnect delay, ms [30000]. */
  maxBackoffMs?: number;
  /** Application ping period, ms [20000]. */
  pingIntervalMs?: number;
  /** Silence after a ping that means a dead socket, ms [8000]. */
  pongTimeoutMs?: number;
  /** Resend an unacked message after this long, ms [10000]. */
  sendRetryMs?: number;
  /** A handshake taking longer than this is a failure, ms [10000]. */
  connectTimeoutMs?: number;
  /** With a token function, refresh the connection's token this long before it expires [60000]. */
  refreshAheadMs?: number;
  /** The shortest time between two refreshes, ms [10000]. */
  refreshFloorMs?: number;
}

export type ClientStatus = "idle" | "connecting" | "online" | "reconnecting" | "closed" | "failed";

export interface StatusDetail {
  status: ClientStatus;
  attempt?: number;
  delayMs?: number;
  retryAt?: number;
  /** `unauthorized` on `closed`; the error code on `failed`. */
  reason?: string;
  message?: string;
}

/** The client's events and what each passes to its listeners. */
export interface ConfabClientEvents {
  status: StatusDetail;
  welcome: WelcomeFrame;
  joined: JoinedFrame;
  ack: AckFrame;
  pong: ServerFrameOf<"pong">;
  typing: ServerFrameOf<"typing">;
  read: ServerFrameOf<"read">;
  presence: ServerFrameOf<"presence">;
  message: ServerFrameOf<"message">;
  message_edited: ServerFrameOf<"message_edited">;
  message_deleted: ServerFrameOf<"message_deleted">;
  reaction_added: ServerFrameOf<"reaction_added">;
  reaction_removed: ServerFrameOf<"reaction_removed">;
  member_added: ServerFrameOf<"member_added">;
  member_removed: ServerFrameOf<"member_removed">;
  member_role_changed: ServerFrameOf<"member_role_changed">;
  conversation_updated: ServerFrameOf<"conversation_updated">;
  /** Every durable event, after its own. */
  event: DurableEvent;
  conversation_added: ServerFrameOf<"conversation_added">;
  conversation_removed: ServerFrameOf<"conversation_removed">;
  role_changed: ServerFrameOf<"role_changed">;
  read_moved: ServerFrameOf<"read_moved">;
  /** Every user event, after its own. */
  user_event: UserEvent;
  /** After each `user_resume`; `resync: true`: re-read the conversation list. */
  user_sync: UserSyncFrame;
  /** The server missed more than its replay cap: reload that conversation's history. */
  gap: { conversation: string; since: number; last_seq: number };
  send_failed: { clientMsgId: string; conversation: string; error: ConfabError };
  join_failed: { conversation: string; error: ConfabError };
  /** An `error` frame answering no command, a failed refresh, or `connect_failed`. */
  error: { type: "error"; code: string; message: string; ref?: string | null };
  unauthorized: Record<string, never>;
}

/** A Confab WebSocket client that survives reconnects (src/confab.js's header says how). */
export declare class ConfabClient extends EventTarget {
  /** Throws a TypeError without a WebSocket implementation, or without `baseUrl` outside a browser. */
  constructor(options: ConfabClientOptions);
  readonly api: ConfabApi;
  readonly baseUrl: string;
  readonly status: ClientStatus;
  /** The `welcome` frame of the current connection. */
  readonly welcome: WelcomeFrame | null;
  readonly online: boolean;

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<K extends keyof ConfabClientEvents>(type: K, listener: (detail: ConfabClientEvents[K]) => void): () => void;
  /** Opens the connection (and keeps it open until {@link close}). */
  connect(): void;
  /** Closes for good; unacked sends and pending commands are rejected. */
  close(): void;
  /** Joins and keeps joined across reconnects (each time with `since` = the last seq seen). */
  join(conversation: string, options?: { since?: number }): Promise<JoinedFrame>;
  leave(conversation: string): Promise<ServerFrameOf<"left">>;
  /** The last seq seen in a joined conversation. */
  lastSeq(conversation: string): number | null;
  /** The last `user_seq` seen (keep it for `userSince`). */
  lastUserSeq(): number | null;
  /** Sends a message, retried with the same `client_msg_id` until acknowledged. */
  send(
    conversation: string,
    body: string,
    options?: { replyTo?: string; attachments?: string[]; clientMsgId?: string },
  ): { clientMsgId: string; acked: Promise<AckFrame> };
  /** Messages sent but not acknowledged yet. */
  unacked(): ClientFrameOf<"send">[];
  edit(message: string, body: string): Promise<OkFrame>;
  delete(message: string): Promise<OkFrame>;
  react(message: string, emoji: string): Promise<OkFrame>;
  unreact(message: string, emoji: string): Promise<OkFrame>;
  read(conversation: string, seq: number): Promise<OkFrame>;
  /** Call on every keystroke: sent at most once per `intervalMs`, only while online. */
  typing(conversation: string, intervalMs?: number): void;
  /** A round trip in milliseconds. */
  ping(): Promise<number>;
}

export interface Member {
  user: string;
  role: Role;
  joined_at: number;
  read_seq: number;
}

export interface SendResult {
  conversation: string;
  client_msg_id: string;
  id: string;
  seq: number;
  ts: number;
  duplicate: boolean;
}

export interface ChangeResult {
  seq?: number;
}

export interface MediaInfo {
  id: string;
  name: string;
  content_type: string;
  size: number;
  sha256: string;
  created_at: number;
  uploader: string;
  conversations: string[];
  downloads: number;
  [field: string]: unknown;
}

export interface SearchHit {
  conversation: string;
  id: string;
  seq: number;
  author: string;
  ts: number;
  /** HTML-escaped text with `<mark>` around matches. */
  snippet: string;
}

export interface UploadProgress {
  phase: "hashing" | "uploading";
  loaded: number;
  total: number;
}

export interface UploadOptions {
  conversation?: string;
  onProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
  singleMaxBytes?: number;
}

/** The REST API under `/v1`. */
export declare class ConfabApi {
  /** Throws a TypeError without `baseUrl` outside a browser. */
  constructor(options: { baseUrl?: string; token: TokenSource });
  readonly baseUrl: string;
  call<T = unknown>(method: string, path: string, body?: unknown, options?: { signal?: AbortSignal }): Promise<T>;
  listConversations(filters?: { kind?: ConversationKind; archived?: boolean }): Promise<{
    conversations: ConversationSummary[];
  }>;
  createConversation(options?: { kind?: ConversationKind; title?: string; members?: string[] }): Promise<ConversationSummary>;
  getConversation(id: string): Promise<ConversationSummary>;
  updateConversation(id: string, changes: { title?: string; archived?: boolean }): Promise<ConversationSummary>;
  listMembers(id: string): Promise<{ members: Member[] }>;
  addMember(id: string, user: string, role?: Role): Promise<unknown>;
  updateMember(id: string, user: string, role: Role): Promise<unknown>;
  removeMember(id: string, user: string): Promise<unknown>;
  markRead(id: string, seq: number): Promise<unknown>;
  history(id: string, page?: { before?: number; after?: number; limit?: number }): Promise<{
    messages: Message[];
    has_more: boolean;
  }>;
  sendMessage(
    id: string,
    message: { body: string; clientMsgId?: string; replyTo?: string; attachments?: string[] },
  ): Promise<SendResult>;
  getMessage(id: string): Promise<Message>;
  editMessage(id: string, body: string): Promise<ChangeResult>;
  deleteMessage(id: string): Promise<ChangeResult>;
  addReaction(id: string, emoji: string): Promise<ChangeResult>;
  removeReaction(id: string, emoji: string): Promise<ChangeResult>;
  searchMessages(
    q: string,
    options?: {
      conversation?: string;
      limit?: number;
      cursor?: string;
      sort?: string;
      waitFor?: string;
      signal?: AbortSignal;
    },
  ): Promise<{ hits: SearchHit[]; next_cursor?: string; indexed_seq?: unknown }>;
  searchSuggestions(prefix: string, options?: { signal?: AbortSignal }): Promise<unknown>;
  uploadFile(file: Blob, options?: UploadOptions): Promise<MediaInfo>;
  uploadSingle(file: Blob, options?: UploadOptions): Promise<MediaInfo>;
  uploadResumable(
    file: Blob,
    options?: UploadOptions & { retries?: number; retryDelayMs?: number; maxRetryDelayMs?: number },
  ): Promise<MediaInfo>;
  mediaInfo(id: string): Promise<MediaInfo>;
  deleteMedia(id: string): Promise<unknown>;
  /** A signed link (no token in it), cached until a minute before it expires. */
  mediaLink(id: string): Promise<{ url: string; expiresAt: number }>;
  cachedMediaLink(id: string): { url: string; expiresAt: number } | null;
  mediaThumbnail(id: string, options?: { signal?: AbortSignal }): Promise<Blob>;
}

/** Development sign-in (a server on loopback with its generated key only). */
export declare function devSignIn(options: {
  user: string;
  name?: string;
  tenant?: string;
  baseUrl?: string;
}): Promise<{ token: string }>;

export declare const SINGLE_UPLOAD_MAX_BYTES: number;
export declare const WHOLE_HASH_MAX_BYTES: number;
export declare const THUMBNAIL_TYPES: readonly string[];
export declare function hasThumbnail(mime: string): boolean;
export declare function planChunks(size: number, chunkSize: number): { n: number; start: number; end: number }[];
export declare function sha256Hex(bytes: BufferSource): Promise<string | undefined>;
export declare function newClientMsgId(): string;
export declare function backoffDelay(attempt: number, initialMs: number, maxMs: number, random?: () => number): number;
/** The `exp` of a JWT (seconds since the epoch), or null. */
export declare function tokenExpiry(token: string): number | null;
