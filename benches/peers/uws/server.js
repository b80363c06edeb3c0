'use strict';
// A µWebSockets.js room-broadcast server speaking the part of Confab's protocol that
// `confab-bench`'s `idle`, `fanout` and `chat` scenarios use (issue 16: "per-message cost as lean
// as µWebSockets.js"). It is the reference the bench runs against beside Confab, not a chat
// server:
//
// - It persists nothing. Conversations, members and seqs live in this process's memory; an ack
//   means "published", not "durably stored" as in Confab, and a restart forgets everything.
// - It does NOT verify tokens. A JWT's payload is decoded for `sub` (user) and `tid` (tenant) and
//   its `exp` is checked, but the signature is never checked: anyone can be anyone.
// - No `client_msg_id` deduplication, no replay on `join` with `since`, no presence (`online` is
//   always empty), no rate limits, no edits, reactions, typing or read markers.
//
// What it does keep, so that the work per message compares with Confab's: tenant scoping and
// membership checks on `join` and `send`, one seq counter per conversation, each frame parsed as
// JSON and each event serialized once and handed to uWS pub/sub (one topic per conversation),
// and a bounded send buffer per connection that cuts off a slow consumer.
//
// Usage: node server.js [PORT]   (or UWS_PEER_PORT; 0 picks a free port). Loopback only.

const crypto = require('crypto');
const uWS = require('uwebsockets');

const HOST = '127.0.0.1';
const port = Number(process.argv[2] ?? process.env.UWS_PEER_PORT ?? 8091);

// Confab's defaults, as its `welcome` announces them.
const MAX_FRAME_BYTES = 65536;
const MAX_BODY_BYTES = 16384;
const MAX_INITIAL_MEMBERS = 1000;
const HEARTBEAT_MS = 25000;
const LIMITS = {
  max_frame_bytes: MAX_FRAME_BYTES,
  max_body_bytes: MAX_BODY_BYTES,
  messages_per_minute: 0,
  replay_cap: 1000,
};
// A connection whose unsent bytes pass this is closed, like Confab's slow-consumer cut-off
// (uWS would otherwise skip it silently until it caught up).
const MAX_BACKPRESSURE = 1 << 20;

/** id -> { id, tenant, kind, title, createdBy, createdAt, members: Map<user, role>, seq } */
const conversations = new Map();
let sessions = 0;
let messageIds = 0;
// Message ids are opaque strings in Confab; here a per-process prefix and a counter.
const idPrefix = crypto.randomBytes(4).toString('hex');

/** The claims of a JWT, read WITHOUT checking its signature; null when malformed or expired. */
function unverifiedClaims(token) {
  const payload = token.split('.')[1];
  if (!payload) return null;
  let claims;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (typeof claims?.sub !== 'string' || typeof claims.tid !== 'string') return null;
  if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) return null;
  return claims;
}

function bearer(header) {
  return header.startsWith('Bearer ') ? header.slice(7).trim() : '';
}

function errorBody(code, message) {
  return JSON.stringify({ code, message });
}

/** The conversation `id` if the caller's tenant holds it (another tenant's is not found). */
function conversationOf(tenant, id) {
  const conversation = conversations.get(id);
  return conversation && conversation.tenant === tenant ? conversation : null;
}

// ---------------------------------------------------------------- REST (setup only)

function reply(res, status, body) {
  if (res.aborted) return;
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(body);
  });
}

/** Reads a JSON body, then calls `done(body)` (`undefined` when it does not parse). */
function readJson(res, done) {
  res.aborted = false;
  res.onAborted(() => {
    res.aborted = true;
  });
  const chunks = [];
  res.onData((chunk, isLast) => {
    // The chunk's memory belongs to uWS and is reused after this callback: copy it.
    chunks.push(Buffer.from(chunk.slice(0)));
    if (!isLast) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = undefined;
    }
    done(body);
  });
}

function conversationJson(c) {
  const out = { id: c.id, kind: c.kind };
  if (c.title != null) out.title = c.title;
  out.created_by = c.createdBy;
  out.created_at = c.createdAt;
  out.archived = false;
  out.last_seq = c.seq;
  return JSON.stringify(out);
}

/** POST /v1/conversations {kind, title?, members}: the caller is the owner. */
function createConversation(res, req) {
  const claims = unverifiedClaims(bearer(req.getHeader('authorization')));
  readJson(res, (body) => {
    if (!claims) return reply(res, '401 Unauthorized', errorBody('unauthorized', 'bad token'));
    const members = body?.members ?? [];
    if (!body || !['group', 'direct'].includes(body.kind) || !Array.isArray(members)) {
      return reply(res, '400 Bad Request', errorBody('invalid', 'bad conversation'));
    }
    if (members.length > MAX_INITIAL_MEMBERS || !members.every((m) => typeof m === 'string')) {
      return reply(res, '400 Bad Request', errorBody('invalid', 'bad members'));
    }
    const conversation = {
      id: crypto.randomUUID().replaceAll('-', ''),
      tenant: claims.tid,
      kind: body.kind,
      title: typeof body.title === 'string' ? body.title : null,
      createdBy: claims.sub,
      createdAt: Date.now(),
      members: new Map(members.map((m) => [m, 'member'])),
      seq: 0,
    };
    conversation.members.set(claims.sub, 'owner');
    conversations.set(conversation.id, conversation);
    reply(res, '201 Created', conversationJson(conversation));
  });
}

/** POST /v1/conversations/:id/members {user, role?}: owners and admins only. */
function addMember(res, req) {
  const claims = unverifiedClaims(bearer(req.getHeader('authorization')));
  const id = req.getParameter(0);
  readJson(res, (body) => {
    if (!claims) return reply(res, '401 Unauthorized', errorBody('unauthorized', 'bad token'));
    const conversation = conversationOf(claims.tid, id);
    const callerRole = conversation?.members.get(claims.sub);
    if (!callerRole) return reply(res, '404 Not Found', errorBody('not_found', 'no such conversation'));
    if (callerRole !== 'owner' && callerRole !== 'admin') {
      return reply(res, '403 Forbidden', errorBody('forbidden', 'owners and admins only'));
    }
    if (typeof body?.user !== 'string') return reply(res, '400 Bad Request', errorBody('invalid', 'bad user'));
    if (conversation.members.has(body.user)) {
      return reply(res, '409 Conflict', errorBody('conflict', 'already a member'));
    }
    const role = body.role ?? 'member';
    conversation.members.set(body.user, role);
    // A member change takes a seq in Confab; joined connections see it like any event.
    const seq = ++conversation.seq;
    app.publish(
      conversation.id,
      JSON.stringify({
        type: 'member_added',
        conversation: conversation.id,
        seq,
        user: body.user,
        role,
        by: claims.sub,
        ts: Date.now(),
      }),
      false,
    );
    reply(res, '201 Created', JSON.stringify({ seq }));
  });
}

/** `process_*` lines, for a bench run without `--server-pid`. */
function metrics(res) {
  const cpu = process.cpuUsage();
  const text =
    `process_resident_memory_bytes ${process.memoryUsage.rss()}\n` +
    `process_cpu_seconds_total ${(cpu.user + cpu.system) / 1e6}\n`;
  res.cork(() => res.writeHeader('content-type', 'text/plain; version=0.0.4').end(text));
}

// ---------------------------------------------------------------- WebSocket

function send(ws, frame) {
  ws.send(JSON.stringify(frame), false);
}

function sendError(ws, ref, code, message) {
  const frame = { type: 'error' };
  if (ref !== undefined) frame.ref = ref;
  frame.code = code;
  frame.message = message;
  send(ws, frame);
}

function onJoin(ws, user, frame) {
  const conversation = conversationOf(user.tenant, frame.conversation);
  if (!conversation || !conversation.members.has(user.user)) {
    return sendError(ws, frame.ref, 'not_found', 'no such conversation');
  }
  ws.subscribe(conversation.id);
  const joined = { type: 'joined' };
  if (frame.ref !== undefined) joined.ref = frame.ref;
  joined.conversation = conversation.id;
  joined.last_seq = conversation.seq;
  joined.recovered = true;
  joined.online = [];
  send(ws, joined);
}

function onLeave(ws, frame) {
  ws.unsubscribe(String(frame.conversation));
  const left = { type: 'left' };
  if (frame.ref !== undefined) left.ref = frame.ref;
  left.conversation = frame.conversation;
  send(ws, left);
}

function onSend(ws, user, frame) {
  const conversation = conversationOf(user.tenant, frame.conversation);
  if (!conversation || !conversation.members.has(user.user)) {
    return sendError(ws, frame.ref, 'not_found', 'no such conversation');
  }
  if (typeof frame.body !== 'string' || typeof frame.client_msg_id !== 'string') {
    return sendError(ws, frame.ref, 'invalid', 'send needs client_msg_id and body');
  }
  if (Buffer.byteLength(frame.body) > MAX_BODY_BYTES) {
    return sendError(ws, frame.ref, 'too_large', 'body too large');
  }
  const seq = ++conversation.seq;
  const id = `${idPrefix}${(++messageIds).toString(16).padStart(12, '0')}`;
  const ts = Date.now();
  // Serialized once; uWS copies the same bytes to every subscriber, the sender's own
  // connections included (app.publish, unlike ws.publish, does not skip the sender).
  app.publish(
    conversation.id,
    JSON.stringify({
      type: 'message',
      conversation: conversation.id,
      id,
      seq,
      author: user.user,
      body: frame.body,
      ts,
      client_msg_id: frame.client_msg_id,
    }),
    false,
  );
  const ack = { type: 'ack' };
  if (frame.ref !== undefined) ack.ref = frame.ref;
  ack.conversation = conversation.id;
  ack.client_msg_id = frame.client_msg_id;
  ack.id = id;
  ack.seq = seq;
  ack.ts = ts;
  ack.duplicate = false;
  send(ws, ack);
}

function onMessage(ws, data, isBinary) {
  if (isBinary) return sendError(ws, undefined, 'invalid', 'binary frames are not accepted');
  let frame;
  try {
    frame = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    return sendError(ws, undefined, 'invalid', 'not JSON');
  }
  const user = ws.getUserData();
  switch (frame?.type) {
    case 'send':
      return onSend(ws, user, frame);
    case 'join':
      return onJoin(ws, user, frame);
    case 'leave':
      return onLeave(ws, frame);
    case 'ping':
      return send(ws, frame.ref !== undefined ? { type: 'pong', ref: frame.ref } : { type: 'pong' });
    default:
      return sendError(ws, frame?.ref, 'invalid', 'not supported by the reference peer');
  }
}

// Authentication happens on the upgrade request only (`Authorization: Bearer`, as the bench
// sends it, or `?token=`); a first `auth` frame is not supported.
function upgrade(res, req, context) {
  let token = bearer(req.getHeader('authorization'));
  if (!token) token = new URLSearchParams(req.getQuery() ?? '').get('token') ?? '';
  const claims = unverifiedClaims(token);
  if (!claims) {
    res
      .writeStatus('401 Unauthorized')
      .writeHeader('content-type', 'application/json')
      .end(errorBody('unauthorized', 'missing or malformed token'));
    return;
  }
  const user = { user: claims.sub, tenant: claims.tid, name: claims.name };
  res.upgrade(
    user,
    req.getHeader('sec-websocket-key'),
    req.getHeader('sec-websocket-protocol'),
    req.getHeader('sec-websocket-extensions'),
    context,
  );
}

function onOpen(ws) {
  const user = ws.getUserData();
  const welcome = { type: 'welcome', user: user.user, tenant: user.tenant };
  if (typeof user.name === 'string') welcome.name = user.name;
  welcome.session = `s${++sessions}`;
  welcome.heartbeat_ms = HEARTBEAT_MS;
  welcome.limits = LIMITS;
  welcome.user_seq = 0;
  send(ws, welcome);
}

const app = uWS.App()
  .ws('/v1/ws', {
    compression: uWS.DISABLED,
    maxPayloadLength: MAX_FRAME_BYTES,
    maxBackpressure: MAX_BACKPRESSURE,
    closeOnBackpressureLimit: true,
    // uWS pings a connection silent this long and closes one that stays silent.
    idleTimeout: 32,
    upgrade,
    open: onOpen,
    message: onMessage,
  })
  .get('/health', (res) => reply(res, '200 OK', '{"status":"ok"}'))
  .get('/metrics', metrics)
  .post('/v1/conversations', createConversation)
  .post('/v1/conversations/:id/members', addMember)
  .any('/*', (res) => reply(res, '404 Not Found', errorBody('not_found', 'not found')));

app.listen(HOST, port, (listenSocket) => {
  if (!listenSocket) {
    console.error(`uws peer: cannot listen on ${HOST}:${port}`);
    process.exit(1);
  }
  console.error(`uws peer: listening on ${HOST}:${uWS.us_socket_local_port(listenSocket)}`);
});
