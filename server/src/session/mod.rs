//! WebSocket sessions: the upgrade handler (authentication happens before the upgrade when a
//! token comes with the request) and one task per connection.
//!
//! A session is a single `select!` loop over: the client's frames, the connection's bounded
//! outbound queue (fed by the hub), the heartbeat, the slow-consumer signal and shutdown.
//! Replies to commands are written directly; queued events are written in batches and flushed
//! once. Durable events are deduplicated by seq per conversation, which is what makes a `join`
//! with `since` gapless: the session subscribes first, then reads the backlog, then drops any
//! queued event the backlog already covered.
//!
//! The loop is generic over its socket ([`Socket`]: a `Stream` and `Sink` of frames), so the
//! tests in `tests.rs` drive it in memory, on tokio's paused clock where time matters.

mod acks;
mod commands;
mod joined;
mod outbound;
mod socket;
mod upgrade;
mod user_stream;

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use confab_protocol::{ClientFrame, Command, ErrorCode, ServerFrame};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tracing::{Instrument, debug, info_span};
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

use crate::auth::{AuthUser, bearer};
use crate::chat::encode;
use crate::error::AppError;
use crate::http::ApiQuery;
use crate::hub::Subscriber;
use crate::limits::ConnectionSlot;
use crate::metrics as m;
use crate::outbox::{Ended, Outbox};
use crate::state::AppState;
use joined::{Joined, JoinedSet};
use upgrade::Handshake;

/// Close codes Confab uses besides the standard ones (1000 normal, 1001 going away, 1009 too
/// big). Documented in docs/protocol.md.
pub mod close_code {
    /// No valid token in time.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The client stayed silent past the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4002;
    /// The outbound queue overflowed; reconnect and resume with `since`.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The connection fell further behind than the replay cap; reconnect and resume.
    pub const RESUME_REQUIRED: u16 = 4009;
    /// RFC 6455's policy violation: over the user's connection cap (after an `auth` frame; a
    /// token on the upgrade gets HTTP 429 instead).
    pub const POLICY: u16 = 1008;
    /// The token expired and no `refresh` replaced it; reconnect with a new token.
    pub const TOKEN_EXPIRED: u16 = 4003;
}

/// How long a closed session waits for the client's close before dropping the socket.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a closing session waits for its last frames to be taken.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Most queued frames written before one flush.
const WRITE_BATCH: usize = 64;
/// The longest a client told `rate_limited` goes unread (see `Session::throttled`).
const MAX_THROTTLE: Duration = Duration::from_secs(1);
/// Read buffer per connection: small, since chat frames are small; tungstenite grows it for a
/// large frame.
const READ_BUFFER: usize = 256;
/// Deliveries a session writes in a row, while more are queued, before it reads its client.
const READ_EVERY: u8 = 4;

/// What a session reads frames from and writes frames to: its own WebSocket over the
/// TCP stream in the server ([`upgrade::WebSocket`]), an in-memory pair of channels in the
/// tests. A type parameter, not a `dyn`: the server's loop is compiled for that stream alone and
/// costs what it did when it named that type, with no `split()` lock between the reading and the
/// writing half (one `select!` loop owns both).
trait Socket:
    Stream<Item = Result<Message, tungstenite::Error>>
    + Sink<Message, Error = tungstenite::Error>
    + Unpin
    + Send
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Unpin
        + Send
{
}

#[derive(Debug, Deserialize)]
pub struct WsParams {
    token: Option<String>,
    /// `?presence=true`: the connection takes `presence` frames.
    #[serde(default)]
    presence: bool,
}

/// `GET /v1/ws`: authenticates by `Authorization: Bearer`, `?token=`, or (when neither is given)
/// a first `auth` frame, then upgrades. `?presence=true` opts in to `presence` frames.
pub async fn ws_handler(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<WsParams>,
    headers: HeaderMap,
    handshake: Handshake,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // axum's checks of the request (and its rejections); the answer is `handshake`'s.
    match ws {
        Ok(_) => {}
        Err(rejection) => {
            return AppError::invalid(format!(
                "this endpoint takes a WebSocket upgrade: {}",
                rejection.body_text()
            ))
            .into_response();
        }
    }
    if state.shutdown.is_cancelled() {
        return AppError::unavailable("server is shutting down").into_response();
    }
    let origins = &state.config.cors_origins;
    if let Some(origin) = headers.get(axum::http::header::ORIGIN)
        && !origins.is_empty()
        && !origin.to_str().is_ok_and(|origin| origins.allows(origin))
    {
        return AppError::forbidden("this origin may not open a WebSocket (see cors_origins)")
            .into_response();
    }
    let header_token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let auth = match header_token.or(params.token.as_deref()) {
        Some(token) => match state.keys.authenticate(token).await {
            Ok(user) => {
                state.people().seen(&state.store, &user);
                Some(user)
            }
            Err(err) => return err.into_response(),
        },
        None => None,
    };
    // Counted from here: dropped with the upgrade if it never completes.
    let slot = match &auth {
        Some(user) => match state.user_limits().connections.open(user) {
            Ok(slot) => Some(slot),
            Err(err) => return err.into_response(),
        },
        None => None,
    };
    // Frames over max_frame_bytes but under this hard cap are answered with `too_large` and the
    // connection lives on; past it the connection is closed with 1009.
    let hard_cap = state.config.max_frame_bytes.saturating_mul(4);
    let presence = params.presence;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(hard_cap))
        .max_frame_size(Some(hard_cap));
    handshake.answer(config, move |socket| {
        let tracker = state.sessions.clone();
        tracker.track_future(start(socket, state, auth, slot, presence))
    })
}

/// Authenticates by the first frame when the upgrade carried no token, then runs the session
/// in a task of its own. The upgrade's task (the handshake's wrapper around this future) ends
/// here, so an idle connection keeps only the session loop's state: nesting the loop in this
/// future made every connection's task 3.6 KiB, since a future holds its arguments beside the
/// futures it awaits.
async fn start<S: Socket + 'static>(
    mut socket: S,
    state: AppState,
    auth: Option<AuthUser>,
    slot: Option<ConnectionSlot>,
    presence: bool,
) {
    let user = match auth {
        Some(user) => user,
        // Boxed: only first-frame authentication needs this state, and only for a moment.
        None => {
            m::ws_unauthenticated(1.0);
            let user = Box::pin(authenticate_first_frame(&mut socket, &state)).await;
            m::ws_unauthenticated(-1.0);
            match user {
                Some(user) => user,
                None => return,
            }
        }
    };
    let slot = match slot {
        Some(slot) => slot,
        None => match state.user_limits().connections.open(&user) {
            Ok(slot) => slot,
            Err(err) => {
                m::ws_error(err.code.as_str());
                if let Ok(text) = encode(&err.into_frame(None)) {
                    let _ = socket.send(Message::Text(text)).await;
                }
                m::ws_closed(&close_code::POLICY.to_string());
                close(&mut socket, close_code::POLICY, "too many connections").await;
                return;
            }
        },
    };
    // From here the session's drop gives the slot back.
    slot.keep();
    let conn = state.hub.next_conn_id();
    let span = info_span!("session", conn, user = %user.user, tenant = %user.tenant);
    let tracker = state.sessions.clone();
    let session = Session::new(state, user, conn);
    if presence {
        session.outbox.enable_presence();
    }
    if let Err(err) = Box::pin(session.start_user_stream()).await {
        // Boxed: rare; a client reconnects after 1011 as after any server error.
        let _ = Box::pin(session.send(&mut socket, &err.into_frame(None))).await;
        Box::pin(close(&mut socket, 1011, "storage unavailable")).await;
        return;
    }
    if Box::pin(session.welcome(&mut socket)).await.is_err() {
        return;
    }
    // Tracked like this future, which stays tracked until the spawn: shutdown cannot miss it.
    // Without a subscriber for the span, no `Instrumented` wrapper: 40 bytes less in every
    // idle connection's task.
    if span.is_disabled() {
        tracker.spawn(session.run(socket));
    } else {
        tracker.spawn(session.run(socket).instrument(span));
    }
}

/// Waits for `{"type":"auth","token":...}` within the auth timeout.
async fn authenticate_first_frame<S: Socket>(socket: &mut S, state: &AppState) -> Option<AuthUser> {
    let deadline = tokio::time::sleep(state.config.auth_timeout);
    tokio::pin!(deadline);
    loop {
        let received = tokio::select! {
            _ = &mut deadline => None,
            received = socket.next() => received,
        };
        let (reference, result) = match received {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientFrame>(&text) {
                Ok(ClientFrame {
                    reference,
                    command: Command::Auth { token },
                }) => (reference, state.keys.authenticate(&token).await),
                Ok(frame) => (
                    frame.reference,
                    Err(AppError::unauthorized("authenticate first")),
                ),
                Err(_) => (None, Err(AppError::unauthorized("authenticate first"))),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) => return None,
            Some(Err(err)) => {
                if let Some((code, reason)) = violation(&err) {
                    m::ws_closed(&code.to_string());
                    close(socket, code, reason).await;
                }
                return None;
            }
            Some(Ok(Message::Binary(_))) => {
                (None, Err(AppError::unauthorized("authenticate first")))
            }
            None => (None, Err(AppError::unauthorized("no auth frame in time"))),
        };
        match result {
            Ok(user) => {
                state.people().seen(&state.store, &user);
                return Some(user);
            }
            Err(err) => {
                m::ws_error(err.code.as_str());
                let frame = err.into_frame(reference);
                if let Ok(text) = encode(&frame) {
                    let _ = socket.send(Message::Text(text)).await;
                }
                m::ws_closed(&close_code::UNAUTHORIZED.to_string());
                close(socket, close_code::UNAUTHORIZED, "unauthorized").await;
                return None;
            }
        }
    }
}

async fn close<S: Socket>(socket: &mut S, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from_static(reason),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    // Linger until the client answers the close (or goes away): dropping the socket with
    // unread input would make the kernel reset the connection and lose the close frame.
    let linger = async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, linger).await;
}

/// Why the loop ended.
pub(super) enum Exit {
    ClientClosed,
    Closed { code: u16, reason: &'static str },
    SocketError,
}

impl Exit {
    const SHUTDOWN: Exit = Exit::Closed {
        code: 1001,
        reason: "server shutting down",
    };
    const SLOW_CONSUMER: Exit = Exit::Closed {
        code: close_code::SLOW_CONSUMER,
        reason: "slow consumer",
    };
    const IDLE: Exit = Exit::Closed {
        code: close_code::IDLE_TIMEOUT,
        reason: "heartbeat timeout",
    };
    const TOKEN_EXPIRED: Exit = Exit::Closed {
        code: close_code::TOKEN_EXPIRED,
        reason: "token expired",
    };

    fn ended(why: Ended) -> Exit {
        match why {
            Ended::Shutdown => Exit::SHUTDOWN,
            Ended::Kicked => Exit::SLOW_CONSUMER,
        }
    }
}

/// What the client's stream yielded, as the loop acts on it.
enum Incoming {
    Text(Utf8Bytes),
    /// A binary frame of this many bytes (refused).
    Binary(usize),
    /// Ping or pong (tungstenite answers pings itself).
    Control,
    End(Exit),
}

impl Incoming {
    fn of(received: Option<Result<Message, tungstenite::Error>>) -> Incoming {
        match received {
            Some(Ok(Message::Text(text))) => Incoming::Text(text),
            Some(Ok(Message::Binary(bytes))) => Incoming::Binary(bytes.len()),
            // A raw frame is never read (tungstenite yields it only to send).
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Incoming::Control,
            Some(Ok(Message::Close(_))) | None => Incoming::End(Exit::ClientClosed),
            Some(Err(err)) => {
                debug!(error = %err, "websocket read failed");
                match violation(&err) {
                    Some((code, reason)) => Incoming::End(Exit::Closed { code, reason }),
                    None => Incoming::End(Exit::SocketError),
                }
            }
        }
    }
}

/// What the loop does besides writing a delivery (the hot path, which stays inline).
enum Step {
    /// Write the answers of sends that have committed.
    Acks,
    /// A text or binary frame from the client.
    Frame(Incoming),
    /// Ping the client, or close an idle or expired connection.
    Heartbeat,
}

struct Session {
    state: AppState,
    user: AuthUser,
    conn: u64,
    outbox: Arc<Outbox>,
    joined: JoinedSet,
    /// Sends waiting for their commit, oldest first.
    acks: acks::Acks,
    /// When the client last sent anything. On tokio's clock (the same size as std's), so that
    /// the idle timeout follows a paused clock in tests.
    last_seen: tokio::time::Instant,
}

/// Keeps the active-connection gauge right however the session ends.
struct ConnectionGauge;

impl ConnectionGauge {
    fn open() -> Self {
        m::connection_opened();
        ConnectionGauge
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        m::connection_closed();
    }
}

/// However the session ends (a panic included), the hub forgets it and its queue is dropped.
impl Drop for Session {
    fn drop(&mut self) {
        self.leave_all();
        self.state.user_limits().connections.close(&self.user);
    }
}

impl Session {
    /// Leaves every joined conversation and closes the outbox (idempotent).
    fn leave_all(&mut self) {
        for (conversation, _) in self.joined.drain() {
            self.state
                .hub
                .unsubscribe(&self.user.tenant, &conversation, &self.outbox);
        }
        let (tenant, user) = (&self.user.tenant, &self.user.user);
        self.state.hub.unregister_user(tenant, user, self.conn);
        self.state.services.heartbeats.stop(&self.outbox);
        self.outbox.close();
    }

    fn new(state: AppState, user: AuthUser, conn: u64) -> Self {
        let outbox = Arc::new(Outbox::new(state.config.outbound_queue));
        Session {
            state,
            user,
            conn,
            outbox,
            joined: JoinedSet::default(),
            acks: acks::Acks::default(),
            last_seen: tokio::time::Instant::now(),
        }
    }

    fn subscriber(&self) -> Subscriber {
        Subscriber {
            conn: self.conn,
            user: self.user.user.clone(),
            outbox: self.outbox.clone(),
        }
    }

    /// Sends `welcome`. Awaited before the session task starts, so that its state is not part
    /// of that task's.
    async fn welcome<S: Socket>(&self, socket: &mut S) -> Result<(), ()> {
        let welcome = ServerFrame::Welcome {
            user: self.user.user.to_string(),
            tenant: self.user.tenant.to_string(),
            name: self.user.name.as_deref().map(str::to_owned),
            session: format!("s{}", self.conn),
            heartbeat_ms: self.state.config.heartbeat.as_millis() as u64,
            limits: self.state.limits(),
            user_seq: self.outbox.user_seq(),
        };
        self.send(socket, &welcome).await
    }

    /// The session task: the loop, then unsubscribing and the goodbye. A plain `fn` returning
    /// an `async move` block, so that the future keeps `self` and the socket once (an `async fn`
    /// taking them as `mut` arguments keeps a second copy of both, 600 bytes per connection).
    #[allow(clippy::manual_async_fn)]
    fn run<S: Socket>(mut self, mut socket: S) -> impl Future<Output = ()> + Send {
        async move {
            let _gauge = ConnectionGauge::open();
            // The loop, in this block rather than a function of its own: a future awaited here
            // would hold references to `self` and the socket beside them (16 bytes per
            // connection).
            let exit = 'session: {
                let outbox = self.outbox.clone();
                // The hub tells a registered session of the shutdown (`Hub::shut_down_sessions`,
                // once the token is cancelled); the session registered before this look, so either
                // the hub tells it or it sees the token cancelled here.
                if self.state.shutdown.is_cancelled() {
                    break 'session Exit::SHUTDOWN;
                }
                // One timer for every session's heartbeat (`crate::heartbeat`), not one each.
                self.state.services.heartbeats.start(&outbox);
                // Deliveries written since the client's side was last polled.
                let mut unread = 0u8;
                loop {
                    // The `select!` only chooses; nothing is awaited inside its branches. A branch
                    // that awaits keeps the `select!`'s output (48 bytes) alive across that await;
                    // with three such branches the compiler kept room for it beside the write's
                    // state too. What it chose is a temporary, gone before the write, and kept
                    // across the one await of the rare steps only.
                    // A delivery is left in the outbox until the write takes it, so that the write
                    // holds no item while it waits for the socket. (`ended` is two atomic loads
                    // and the waker's registration, a `poll_fn` that costs nothing to build.)
                    match tokio::select! {
                        biased;
                        why = outbox.ended() => break 'session Exit::ended(why),
                        _ = self.acks.ready(), if !self.acks.is_empty() => {
                            // A queued delivery goes out with the answer, in one flush.
                            if outbox.has_items() {
                                Ok(())
                            } else {
                                Err(Step::Acks)
                            }
                        }
                        // Deliveries before the client's side: polling a socket with nothing to
                        // read still registers its waker (tokio's lock on the socket's waiters, the
                        // WebSocket layer's proxy), and a delivery's wake-up found nothing there
                        // almost every time. Every `READ_EVERY` deliveries in a row the client's
                        // side comes first, so a client is read however busy its queue.
                        () = outbox.filled(), if unread < READ_EVERY => {
                            unread += 1;
                            Ok(())
                        }
                        // While too many sends wait for their commit, the client waits
                        // (backpressure).
                        received = socket.next(), if self.acks.has_room() => {
                            unread = 0;
                            self.last_seen = tokio::time::Instant::now();
                            match Incoming::of(received) {
                                Incoming::Control => continue,
                                Incoming::End(exit) => break 'session exit,
                                incoming => Err(Step::Frame(incoming)),
                            }
                        }
                        // The client's side was just polled (or the session waits for commits).
                        () = outbox.filled() => {
                            unread = 0;
                            Ok(())
                        }
                        () = self.state.services.heartbeats.tick(&outbox) => Err(Step::Heartbeat),
                    } {
                        Ok(()) => {}
                        Err(step) => {
                            if let Err(exit) = self.take_step(&mut socket, step).await {
                                break 'session exit;
                            }
                            continue;
                        }
                    };
                    // A client that stops reading blocks the write; the hub's kick, shutdown and
                    // the idle timeout must still end the session. Most writes finish at once: only
                    // one that does not gets the idle deadline's timer, boxed, so that an idle
                    // session's future holds no timer for it.
                    let idle = IdleTimer::Due(self.idle_deadline());
                    let written = WriteWithin {
                        write: self.write_queued(&mut socket),
                        outbox: &outbox,
                        idle,
                    };
                    if let Err(exit) = written.await {
                        break 'session exit;
                    }
                }
            };
            self.leave_all();
            if let Some(goodbye) = self.goodbye(&mut socket, exit) {
                goodbye.await;
            }
        }
    }

    /// How the session ended, counted and logged; when the server closes it, the goodbye to
    /// await: the answers still due, a last error frame and the close, bounded by
    /// [`CLOSE_TIMEOUT`].
    fn goodbye<'a, S: Socket + 'a>(
        &'a mut self,
        socket: &'a mut S,
        exit: Exit,
    ) -> Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>> {
        match exit {
            Exit::Closed { code, reason } => {
                debug!(code, reason, "closing session");
                m::ws_closed(&code.to_string());
                // Bounded: a client that does not read may never take the close frame.
                let goodbye = async move {
                    // Sends in flight commit anyway: their acks go out first.
                    if self.drain_acks(socket).await.is_err() {
                        return;
                    }
                    let last_word = match code {
                        close_code::SLOW_CONSUMER => {
                            Some((ErrorCode::SlowConsumer, "slow consumer: resume with since"))
                        }
                        close_code::TOKEN_EXPIRED => Some((
                            ErrorCode::Unauthorized,
                            "token expired: reconnect with a new token (send `refresh` \
                             before it expires to keep the connection)",
                        )),
                        _ => None,
                    };
                    if let Some((code, message)) = last_word {
                        let frame = ServerFrame::error(None, code, message);
                        let _ = self.send(socket, &frame).await;
                    }
                    close(socket, code, reason).await;
                };
                // Boxed, like every rare path: an idle session's task holds only the loop.
                Some(Box::pin(async move {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
                }))
            }
            Exit::ClientClosed => {
                debug!("client closed session");
                m::ws_closed("client");
                None
            }
            Exit::SocketError => {
                debug!("session socket failed");
                m::ws_closed("socket_error");
                None
            }
        }
    }

    /// A step of the loop other than a delivery, in a box of its own size: command handling
    /// is large and rare next to deliveries, and a timer and a write once per heartbeat stay
    /// out of the idle state too. One allocation per step, as when each was boxed in its
    /// `select!` branch.
    fn take_step<'a, S: Socket + 'a>(
        &'a mut self,
        socket: &'a mut S,
        step: Step,
    ) -> Pin<Box<dyn Future<Output = Result<(), Exit>> + Send + 'a>> {
        match step {
            Step::Acks => Box::pin(async move {
                self.write_acks(socket)
                    .await
                    .map_err(|()| Exit::SocketError)
            }),
            Step::Frame(incoming) => Box::pin(self.take_frame(socket, incoming)),
            Step::Heartbeat => Box::pin(self.heartbeat(socket)),
        }
    }

    /// A text frame (a command) or a binary one (refused).
    async fn take_frame<S: Socket>(
        &mut self,
        socket: &mut S,
        incoming: Incoming,
    ) -> Result<(), Exit> {
        match incoming {
            Incoming::Text(text) => {
                self.state.wire().received(text.len());
                self.handle_frame(socket, &text).await
            }
            Incoming::Binary(bytes) => {
                self.state.wire().received(bytes);
                let err =
                    AppError::invalid("binary frames are not supported; send JSON text frames");
                self.send_error(socket, None, err)
                    .await
                    .map_err(|()| Exit::SocketError)
            }
            Incoming::Control | Incoming::End(_) => Ok(()),
        }
    }

    /// After a `rate_limited` answer the client is not read for the wait it was told (at most
    /// [`MAX_THROTTLE`]); its deliveries and acks still go out. A client flooding past its
    /// limits then waits in TCP's flow control instead of costing the server a parse, a limiter
    /// check and an error frame per request (the `flood` bench: 15,000 refused requests a
    /// second took most of a core before).
    pub(super) async fn throttled<S: Socket>(
        &mut self,
        socket: &mut S,
        wait: Duration,
    ) -> Result<(), Exit> {
        m::ws_throttled();
        let until = tokio::time::sleep(wait.min(MAX_THROTTLE));
        let outbox = self.outbox.clone();
        tokio::pin!(until);
        loop {
            tokio::select! {
                biased;
                why = outbox.ended() => return Err(Exit::ended(why)),
                _ = self.acks.ready(), if !self.acks.is_empty() => {
                    self.write_acks(socket).await.map_err(|()| Exit::SocketError)?;
                }
                () = outbox.filled() => self.write_queued(socket).await?,
                _ = &mut until => return Ok(()),
            }
        }
    }

    /// Once per heartbeat interval: closes a connection whose token has expired or that was
    /// silent past the idle timeout, else pings it (a ping the client does not take before
    /// that deadline closes it too).
    async fn heartbeat<S: Socket>(&mut self, socket: &mut S) -> Result<(), Exit> {
        if jsonwebtoken::get_current_timestamp() >= self.user.expires_at {
            return Err(Exit::TOKEN_EXPIRED);
        }
        if self.last_seen.elapsed() > self.state.config.idle_timeout {
            return Err(Exit::IDLE);
        }
        let ping = socket.send(Message::Ping(Default::default()));
        match tokio::time::timeout_at(self.idle_deadline(), ping).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Exit::SocketError),
            Err(_) => Err(Exit::IDLE),
        }
    }

    /// When the connection counts as dead if nothing more arrives.
    fn idle_deadline(&self) -> tokio::time::Instant {
        self.last_seen + self.state.config.idle_timeout
    }

    async fn send<S: Socket>(&self, socket: &mut S, frame: &ServerFrame) -> Result<(), ()> {
        let text = encode(frame).map_err(|_| ())?;
        self.state.wire().sent(1, text.len() as u64);
        socket.send(Message::Text(text)).await.map_err(|_| ())
    }

    async fn send_error<S: Socket>(
        &self,
        socket: &mut S,
        reference: Option<String>,
        err: AppError,
    ) -> Result<(), ()> {
        m::ws_error(err.code.as_str());
        self.send(socket, &err.into_frame(reference)).await
    }
}

pin_project_lite::pin_project! {
    /// The loop's write of queued items: done when the write completes, when the hub ends the
    /// session (a kick or shutdown), or at the idle deadline, whichever comes first. Most writes
    /// complete at once; only one that the client holds up gets the deadline's timer, boxed, so
    /// that an idle session's future holds no timer. A plain future that owns the write, with
    /// the deadline and the timer in one field: as an `async fn` the loop's future was 80
    /// bytes larger, and this branch (the write and this, kept across one await) sets the size
    /// of the loop's future.
    struct WriteWithin<'a, W> {
        #[pin]
        write: W,
        outbox: &'a Outbox,
        idle: IdleTimer,
    }
}

/// The idle deadline of a write, and its timer once the write waits (16 bytes: the boxed timer
/// takes the deadline's place).
enum IdleTimer {
    Due(tokio::time::Instant),
    Armed(Pin<Box<tokio::time::Sleep>>),
}

impl<W> Future for WriteWithin<'_, W>
where
    W: Future<Output = Result<(), Exit>>,
{
    type Output = Result<(), Exit>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(written) = this.write.poll(cx) {
            return Poll::Ready(written);
        }
        if let Poll::Ready(why) = Pin::new(&mut this.outbox.ended()).poll(cx) {
            return Poll::Ready(Err(Exit::ended(why)));
        }
        if let IdleTimer::Due(deadline) = *this.idle {
            *this.idle = IdleTimer::Armed(Box::pin(tokio::time::sleep_until(deadline)));
        }
        // Armed just above.
        let IdleTimer::Armed(timer) = this.idle else {
            return Poll::Pending;
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Exit::IDLE)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The RFC 6455 close code and reason for a frame the client must not send: 1009 for a frame or
/// message over the hard cap (counted as a `too_large` error), 1007 for a text message that is
/// not UTF-8, 1002 for any other protocol violation (an unmasked frame, reserved bits or opcodes,
/// a control frame over 125 bytes or fragmented). `None` for I/O failures: nothing to tell.
fn violation(err: &tungstenite::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::ProtocolError;
    match err {
        tungstenite::Error::Capacity(_) => {
            m::ws_error(ErrorCode::TooLarge.as_str());
            Some((1009, "frame too large"))
        }
        tungstenite::Error::Utf8(_) => Some((1007, "invalid utf-8")),
        tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::ReceivedAfterClosing,
        ) => None,
        tungstenite::Error::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
