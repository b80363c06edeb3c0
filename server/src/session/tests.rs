//! The session loop driven in memory: a pair of channels stands in for the WebSocket, and the
//! state is the real one over a SQLite store in a temporary directory. No binary, no TCP.
//!
//! Which clock: the heartbeat and idle-timeout tests never touch the store, so they run on
//! tokio's paused clock and check timings exactly. The others commit to SQLite, whose writer is
//! a thread of its own: while a test waits for it the runtime is idle, and a paused clock would
//! jump to the next timer (a heartbeat, or a test's own timeout) instead of waiting for the
//! commit. They run on the real clock and wait on frames, never on sleeps; their timeout only
//! turns a hang into a failure.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use confab_protocol::rest::ConversationKind;
use confab_storage::sqlite::{SqliteOptions, SqliteStore};
use confab_storage::{EventSink, NewConversation, NewMessage, StoredEvent};
use futures_util::{Sink, Stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tungstenite::Message;

use super::{Session, close_code, start};
use crate::auth::{AuthUser, JwtKeys};
use crate::config::Config;
use crate::hub::Hub;
use crate::state::AppState;

const TENANT: &str = "t1";
/// How long a test waits for a frame before it fails (instead of hanging).
const PATIENCE: Duration = Duration::from_secs(60);

/// Every idle connection keeps a `Session` inside its task, and the task's size has a cliff:
/// on Dec 2 a session loop future of 1,416 B cost 3,942 B of RSS per idle connection in the
/// `idle` bench, one of 1,432 B cost 4,630 B (glibc's placement of tokio's 128-byte-aligned
/// task cells). Growing the session past this needs that bench run again. (Dec 5: the token's
/// expiry, 8 B, came in as the message limiter, 8 B, moved out of `AppState`. Dec 6: 192 B,
/// the joined conversations in a `Vec` rather than a `HashMap`; 128 B, `AppState` one `Arc`.
/// Dec 7: 120 B, the joined conversations a boxed slice.)
#[test]
fn the_session_stays_small() {
    assert!(
        std::mem::size_of::<Session>() <= 120,
        "Session is {} bytes",
        std::mem::size_of::<Session>()
    );
}

/// The session task's future for the server's socket type, which every idle connection keeps:
/// 1,376 B on Dec 4, 1,008 B since Dec 6 (issue 17: no idle-deadline timer in the loop, a
/// write path that holds no frame across an await, `poll_fn`s instead of `async fn` layers in
/// the `select!`), 992 B with the shared heartbeat timer (no `Interval` in the loop), 904 B
/// since the write and a received frame each hold their state across one await of the loop
/// only (issue 17, third pass), 744 B since the `select!` only chooses (its output was kept
/// beside the write), the rare steps and writes take their state whole, and the write keeps
/// its arguments once, 648 B since `AppState` is one `Arc` and the loop is part of `run`
/// (issue 17, fourth pass), 600 B since the socket is tokio-tungstenite's stream over the TCP
/// stream rather than axum's `WebSocket` over hyper's `Upgraded` (issue 17, fifth pass; see
/// `the_socket_stays_small`). Dec 7 (issue 17, sixth pass): 528 B, the socket tungstenite's
/// context driven by the session itself (−16 B, then +8 B for its own write buffer), the
/// joined set a boxed slice (8 B), and the
/// write's state 48 B smaller (it owns its write and keeps no item across the socket's wait,
/// the deadline and its timer share a field, the outbox's end is watched through the outbox).
/// tokio's task cells are 128-byte aligned, so the task shrinks in steps of 128 B: the cell is
/// this future, `TaskTracker`'s token (8 B) and tokio's header, core and trailer (104 B)
/// rounded up, so at most 528 B keeps it at 640 B (it was 1,024 B, then 768 B) and the next
/// step (512 B) needs at most 400 B; the session's tracing span, when a subscriber enables it,
/// wraps 40 B more around it.
#[test]
fn the_session_loop_stays_small() {
    fn future_size<S, F: Future>(_: fn(Session, S) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    let size = future_size(Session::run::<super::upgrade::WebSocket>);
    let limit = 528 + DEBUG_SOCKET_EXTRA;
    assert!(size <= limit, "the session loop's future is {size} bytes");
}

/// What a debug build adds to the socket: mio keeps a selector id in every socket when
/// `debug_assertions` are on (8 B). The limits here are the release build's plus this.
const DEBUG_SOCKET_EXTRA: usize = if cfg!(debug_assertions) { 8 } else { 0 };

/// The socket, the largest part of the session's future: axum's `WebSocket` was 368 B
/// (tokio-tungstenite's stream over hyper's `Upgraded`, 48 B, plus the chosen subprotocol,
/// 40 B); tokio-tungstenite's stream over the TCP stream and its open-connection count
/// (`upgrade::Io`, 40 B) was 320 B (issue 17, fifth pass); tungstenite's context over that
/// stream, without tokio-tungstenite's two waker proxies (16 B here, 128 B on the heap), and
/// with a write buffer of its own that an idle connection does not keep (8 B here; 221 B of
/// tungstenite's buffer on the heap), is 312 B (sixth pass).
#[test]
fn the_socket_stays_small() {
    let io = std::mem::size_of::<super::upgrade::Io>();
    assert!(
        io <= 40 + DEBUG_SOCKET_EXTRA,
        "the socket's byte stream is {io} bytes"
    );
    let socket = std::mem::size_of::<super::upgrade::WebSocket>();
    assert!(
        socket <= 312 + DEBUG_SOCKET_EXTRA,
        "the socket is {socket} bytes"
    );
}

/// The write path is part of the loop's future (inline: it is the hot path); it was 360 B
/// while it held a frame across its awaits, 176 B while it kept its arguments twice and a
/// rare item's `Admit` across the rare paths' awaits, 88 B while it was handed its first item
/// (now it takes every item from the outbox once the socket is ready).
#[test]
fn the_write_path_stays_small() {
    fn future_size<A, B, F: Future>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    let size = future_size(Session::write_queued::<super::upgrade::WebSocket>);
    assert!(size <= 56, "the write path's future is {size} bytes");
}

/// The server's end of an in-memory connection. Unbounded, so the session never waits on
/// the test to read.
struct MemorySocket {
    incoming: mpsc::UnboundedReceiver<Message>,
    outgoing: mpsc::UnboundedSender<Message>,
    /// Flushes so far (a real socket's system calls).
    flushes: Arc<AtomicUsize>,
}

impl Stream for MemorySocket {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx).map(|message| message.map(Ok))
    }
}

impl Sink<Message> for MemorySocket {
    type Error = tungstenite::Error;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.outgoing
            .send(item)
            .map_err(|_| tungstenite::Error::ConnectionClosed)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

/// The client's end.
struct Client {
    to_server: mpsc::UnboundedSender<Message>,
    from_server: mpsc::UnboundedReceiver<Message>,
    flushes: Arc<AtomicUsize>,
}

impl Client {
    fn pair() -> (Client, MemorySocket) {
        let (to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, from_server) = mpsc::unbounded_channel();
        let flushes = Arc::new(AtomicUsize::new(0));
        let client = Client {
            to_server,
            from_server,
            flushes: Arc::clone(&flushes),
        };
        let socket = MemorySocket {
            incoming,
            outgoing,
            flushes,
        };
        (client, socket)
    }

    fn send(&self, frame: Value) {
        self.send_message(Message::Text(frame.to_string().into()));
    }

    fn send_message(&self, message: Message) {
        self.to_server.send(message).expect("the session is gone");
    }

    /// The next message, whatever it is; `None` once the session dropped its socket.
    async fn message(&mut self) -> Option<Message> {
        tokio::time::timeout(PATIENCE, self.from_server.recv())
            .await
            .expect("no message in time")
    }

    /// The next text frame, skipping pings.
    async fn frame(&mut self) -> Value {
        loop {
            match self.message().await.expect("the session ended") {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame, which must be of type `kind`.
    async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.frame().await;
        assert_eq!(frame["type"], kind, "unexpected frame {frame}");
        frame
    }

    async fn join(&mut self, conversation: &str, since: Option<u64>) -> Value {
        let mut join = json!({"type": "join", "conversation": conversation});
        if let Some(since) = since {
            join["since"] = json!(since);
        }
        self.send(join);
        self.expect("joined").await
    }
}

/// Forwards committed events to the hub, except the seqs it was told to lose: an event lost
/// between nodes, as the hub sees it.
struct LossySink {
    hub: Arc<Hub>,
    lose: AtomicU64,
    /// Batches of events committed so far.
    batches: AtomicU64,
}

impl EventSink for LossySink {
    fn publish(&self, mut events: Vec<StoredEvent>) {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let lose = self.lose.load(Ordering::SeqCst);
        events.retain(|event| event.seq != lose);
        self.hub.publish(events);
    }
}

struct Server {
    state: AppState,
    sink: Arc<LossySink>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn new(mut config: Config) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        // The search index and media files too: nothing in the working directory.
        config.data_dir = dir.path().to_owned();
        let hub = Arc::new(Hub::new());
        let sink = Arc::new(LossySink {
            hub: hub.clone(),
            lose: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        });
        let store = SqliteStore::open(
            &dir.path().join("confab.db"),
            sink.clone(),
            SqliteOptions::default(),
        )
        .expect("store");
        let keys = JwtKeys::from_secret(b"a-test-secret-of-at-least-32-bytes").expect("keys");
        let search = crate::search::SearchService::for_config(&config).expect("search");
        let media = crate::media::MediaService::new(
            crate::media::open(&config).expect("media"),
            &config,
            &keys,
            None,
        );
        let state = AppState::new(config, Arc::new(store), media, search, hub, keys, None);
        Server {
            state,
            sink,
            _dir: dir,
        }
    }

    /// A session for `user`, past its `welcome`.
    async fn connect(&self, user: &str) -> Client {
        let auth = AuthUser {
            user: user.into(),
            tenant: TENANT.into(),
            name: None,
            expires_at: u64::MAX,
        };
        // Returns once the session task is spawned.
        let (mut client, socket) = Client::pair();
        start(socket, self.state.clone(), Some(auth), None, false).await;
        client.expect("welcome").await;
        client
    }

    /// A group of alice and bob; returns its id and last seq.
    async fn conversation(&self) -> (String, u64) {
        let (conversation, _) = self
            .state
            .store
            .create_conversation(NewConversation {
                tenant: TENANT.into(),
                creator: "alice".into(),
                kind: ConversationKind::Group,
                title: Some("test".into()),
                members: vec!["bob".into()],
            })
            .await
            .expect("conversation");
        (conversation.id, conversation.last_seq)
    }

    /// Bob posts `body` through the store (as another connection would); returns its seq.
    async fn post(&self, conversation: &str, body: &str) -> u64 {
        self.state
            .store
            .append_message(NewMessage {
                tenant: TENANT.into(),
                conversation: conversation.into(),
                author: "bob".into(),
                client_msg_id: format!("bob-{body}"),
                body: body.into(),
                reply_to: None,
                attachments: Vec::new(),
                repeat_only: false,
            })
            .await
            .expect("append")
            .seq
    }
}

fn message_frame(frame: &Value) -> (u64, &str) {
    assert_eq!(frame["type"], "message", "unexpected frame {frame}");
    let seq = frame["seq"].as_u64().expect("seq");
    (seq, frame["body"].as_str().expect("body"))
}

// Real clock: commits to SQLite (see the module's doc).
#[tokio::test]
async fn join_answers_then_delivers_what_is_posted() {
    let server = Server::new(Config::default());
    let (conversation, last_seq) = server.conversation().await;
    let mut alice = server.connect("alice").await;

    let joined = alice.join(&conversation, None).await;
    assert_eq!(joined["conversation"], conversation.as_str());
    assert_eq!(joined["last_seq"], last_seq);

    let seq = server.post(&conversation, "hello").await;
    assert_eq!(seq, last_seq + 1);
    assert_eq!(message_frame(&alice.frame().await), (seq, "hello"));
}

// Real clock: commits to SQLite.
#[tokio::test]
async fn join_refuses_a_conversation_the_user_is_not_in() {
    let server = Server::new(Config::default());
    let (conversation, _) = server.conversation().await;
    let mut carol = server.connect("carol").await;
    carol.send(json!({"type": "join", "ref": "j", "conversation": conversation}));
    let error = carol.expect("error").await;
    assert_eq!(error["ref"], "j");
    assert_eq!(error["code"], "not_member");
}

// Real clock: commits to SQLite.
#[tokio::test]
async fn join_with_since_replays_the_backlog_then_goes_on_without_duplicates() {
    let server = Server::new(Config::default());
    let (conversation, since) = server.conversation().await;
    for body in ["one", "two", "three"] {
        server.post(&conversation, body).await;
    }
    let mut alice = server.connect("alice").await;

    let joined = alice.join(&conversation, Some(since)).await;
    assert_eq!(joined["last_seq"], since + 3);
    assert_eq!(joined["recovered"], true);
    for (n, body) in ["one", "two", "three"].into_iter().enumerate() {
        assert_eq!(
            message_frame(&alice.frame().await),
            (since + 1 + n as u64, body)
        );
    }

    let seq = server.post(&conversation, "four").await;
    assert_eq!(message_frame(&alice.frame().await), (seq, "four"));
}

// Real clock: commits to SQLite.
#[tokio::test]
async fn a_resume_past_the_replay_cap_replays_nothing() {
    let server = Server::new(Config {
        replay_cap: 2,
        ..Config::default()
    });
    let (conversation, since) = server.conversation().await;
    for body in ["one", "two", "three"] {
        server.post(&conversation, body).await;
    }
    let mut alice = server.connect("alice").await;

    let joined = alice.join(&conversation, Some(since)).await;
    assert_eq!(joined["recovered"], false);
    assert_eq!(joined["last_seq"], since + 3);
    // Nothing was replayed: the next frame is the next message.
    let seq = server.post(&conversation, "four").await;
    assert_eq!(message_frame(&alice.frame().await), (seq, "four"));
}

// Real clock: commits to SQLite.
#[tokio::test]
async fn an_event_lost_on_the_way_is_filled_from_storage() {
    let server = Server::new(Config::default());
    let (conversation, last_seq) = server.conversation().await;
    let mut alice = server.connect("alice").await;
    alice.join(&conversation, None).await;

    // The hub never sees the first message: the second arrives past a hole.
    server.sink.lose.store(last_seq + 1, Ordering::SeqCst);
    let lost = server.post(&conversation, "lost").await;
    let after = server.post(&conversation, "after").await;

    assert_eq!(message_frame(&alice.frame().await), (lost, "lost"));
    assert_eq!(message_frame(&alice.frame().await), (after, "after"));
}

// Real clock: commits to SQLite.
#[tokio::test]
async fn acks_follow_the_order_of_the_sends_and_commands_wait_for_them() {
    let server = Server::new(Config::default());
    let (conversation, _) = server.conversation().await;
    let mut alice = server.connect("alice").await;

    let send = |reference: &str, body: &str| {
        json!({"type": "send", "ref": reference, "conversation": conversation,
               "client_msg_id": reference, "body": body})
    };
    alice.send(send("s1", "first"));
    // Refused before it reaches the store, answered in its turn all the same.
    alice.send(send("s2", ""));
    alice.send(send("s3", "third"));
    alice.send(json!({"type": "ping", "ref": "p"}));

    let first = alice.expect("ack").await;
    assert_eq!(first["ref"], "s1");
    let refused = alice.expect("error").await;
    assert_eq!(refused["ref"], "s2");
    let third = alice.expect("ack").await;
    assert_eq!(third["ref"], "s3");
    assert_eq!(
        third["seq"].as_u64().expect("seq"),
        first["seq"].as_u64().expect("seq") + 1
    );
    // The ping came after the sends: its answer follows their acks.
    assert_eq!(alice.expect("pong").await["ref"], "p");
}

fn heartbeat_config() -> Config {
    Config {
        heartbeat: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(25),
        ..Config::default()
    }
}

async fn expect_ping(client: &mut Client) {
    match client.message().await {
        Some(Message::Ping(_)) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
}

/// The close code the session sent, once it closed.
async fn expect_close(client: &mut Client) -> u16 {
    loop {
        match client.message().await {
            Some(Message::Close(Some(frame))) => return frame.code.into(),
            Some(Message::Ping(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

// Paused clock: nothing here touches the store, so time moves only from timer to timer.
#[tokio::test(start_paused = true)]
async fn a_client_that_answers_is_pinged_every_heartbeat_and_kept() {
    let server = Server::new(heartbeat_config());
    let mut alice = server.connect("alice").await;
    let connected = Instant::now();

    // Well past the idle timeout, kept alive by its answers.
    for n in 1..=10 {
        expect_ping(&mut alice).await;
        assert_eq!(connected.elapsed(), Duration::from_secs(10 * n));
        alice.send_message(Message::Pong(Default::default()));
    }
    alice.send(json!({"type": "ping", "ref": "still-there"}));
    assert_eq!(alice.expect("pong").await["ref"], "still-there");
}

// Paused clock: nothing here touches the store.
#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_at_the_first_heartbeat_past_the_idle_timeout() {
    let server = Server::new(heartbeat_config());
    let mut alice = server.connect("alice").await;
    let connected = Instant::now();

    expect_ping(&mut alice).await;
    expect_ping(&mut alice).await;
    // Silent since it connected: idle at 25 s, noticed by the heartbeat at 30 s.
    assert_eq!(expect_close(&mut alice).await, close_code::IDLE_TIMEOUT);
    assert_eq!(connected.elapsed(), Duration::from_secs(30));
    // The session waits a moment for the client's close, then drops the socket.
    assert!(alice.message().await.is_none(), "the session is gone");
}

// Paused clock: nothing here touches the store.
#[tokio::test(start_paused = true)]
async fn the_idle_timeout_counts_from_the_last_frame_received() {
    let server = Server::new(heartbeat_config());
    let mut alice = server.connect("alice").await;
    let connected = Instant::now();

    expect_ping(&mut alice).await;
    alice.send_message(Message::Pong(Default::default()));
    // Last heard at 10 s: still there at 30 s (20 s), closed at 40 s (30 s).
    expect_ping(&mut alice).await;
    expect_ping(&mut alice).await;
    assert_eq!(expect_close(&mut alice).await, close_code::IDLE_TIMEOUT);
    assert_eq!(connected.elapsed(), Duration::from_secs(40));
}

// Paused clock: nothing here touches the store.
#[tokio::test(start_paused = true)]
async fn a_connection_without_a_token_is_closed_when_no_auth_frame_comes_in_time() {
    let server = Server::new(Config {
        auth_timeout: Duration::from_secs(5),
        ..Config::default()
    });
    let (mut client, socket) = Client::pair();
    let connected = Instant::now();
    let session = tokio::spawn(start(socket, server.state.clone(), None, None, false));

    let error = client.expect("error").await;
    assert_eq!(error["code"], "unauthorized");
    assert_eq!(connected.elapsed(), Duration::from_secs(5));
    assert_eq!(expect_close(&mut client).await, close_code::UNAUTHORIZED);
    session.await.expect("the upgrade task");
}

// Real clock: sends commit to SQLite. The only timing asserted is a lower bound (a sleep is
// never shorter), so a slow machine cannot fail it.
#[tokio::test]
async fn a_client_told_rate_limited_is_not_read_for_its_wait_but_still_gets_its_deliveries() {
    let server = Server::new(Config {
        message_rate_per_minute: 2,
        ..Config::default()
    });
    let (conversation, _) = server.conversation().await;
    let mut alice = server.connect("alice").await;
    alice.join(&conversation, None).await;

    let send = |n: u32| {
        json!({"type": "send", "ref": format!("s{n}"), "conversation": conversation,
               "client_msg_id": format!("c{n}"), "body": format!("m{n}")})
    };
    // Two within the budget, the third refused, then a ping that must wait for the refusal's
    // wait (capped at MAX_THROTTLE).
    for n in 1..=3 {
        alice.send(send(n));
    }
    alice.send(json!({"type": "ping", "ref": "after"}));
    let mut acks = 0;
    let refused_at = loop {
        let frame = alice.frame().await;
        match frame["type"].as_str() {
            Some("ack") => acks += 1,
            Some("message") => {}
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                assert!(frame["retry_after_ms"].as_u64().is_some(), "{frame}");
                break Instant::now();
            }
            _ => panic!("unexpected frame {frame}"),
        }
    };
    assert_eq!(acks, 2);
    // While unread, the client still receives the conversation's events.
    let seq = server.post(&conversation, "from bob").await;
    loop {
        let frame = alice.frame().await;
        match frame["type"].as_str() {
            Some("message") if frame["seq"] == seq => break,
            Some("message") => {}
            _ => panic!("expected bob's message before the pong, got {frame}"),
        }
    }
    let pong = alice.expect("pong").await;
    assert_eq!(pong["ref"], "after");
    assert!(
        refused_at.elapsed() >= super::MAX_THROTTLE - Duration::from_millis(50),
        "the ping was read {:?} after the refusal",
        refused_at.elapsed()
    );
}

// Real clock: commits to SQLite. Deliveries come before the client's side of the socket (see
// `READ_EVERY`), but a queue that never empties must not keep the client unread: with a full
// queue and a ping waiting, the pong comes after `READ_EVERY` batches, not after the queue.
#[tokio::test]
async fn a_client_whose_queue_never_empties_is_still_read() {
    let server = Server::new(Config::default());
    let queued = server.state.config.outbound_queue;
    let (conversation, _) = server.conversation().await;
    let mut alice = server.connect("alice").await;
    alice.join(&conversation, None).await;

    // The session waits; both arrive before it runs again (one thread: this test's).
    alice.send(json!({"type": "ping", "ref": "busy"}));
    for n in 0..queued {
        let text = json!({"type": "typing", "conversation": conversation, "n": n});
        server
            .state
            .hub
            .publish_ephemeral(TENANT, &conversation, text.to_string().into(), None);
    }
    let mut before_pong = 0;
    loop {
        let frame = alice.frame().await;
        match frame["type"].as_str() {
            Some("typing") => before_pong += 1,
            Some("pong") => {
                assert_eq!(frame["ref"], "busy");
                break;
            }
            _ => panic!("unexpected frame {frame}"),
        }
    }
    let bound = usize::from(super::READ_EVERY) * super::WRITE_BATCH;
    assert!(
        before_pong <= bound && bound < queued,
        "{before_pong} deliveries before the pong, of {queued} queued"
    );
    for _ in before_pong..queued {
        assert_eq!(alice.frame().await["type"], "typing");
    }
}

// Real clock: commits to SQLite. A sender's ack and the echo of its message are ready at about
// the same time (the writer publishes, then answers); whichever wakes the session, both go out
// in one flush. Made deterministic by holding the store's write turn (`confab.db-writer`, as
// another node would) until the session has queued the send, then keeping this test's one
// runtime thread busy until the commit is done, so that the session runs once with both ready.
#[tokio::test]
async fn an_ack_and_the_echo_of_its_message_go_out_in_one_flush() {
    let server = Server::new(Config::default());
    let (conversation, _) = server.conversation().await;
    let mut alice = server.connect("alice").await;
    alice.join(&conversation, None).await;
    let turn = std::fs::File::options()
        .read(true)
        .write(true)
        .open(server._dir.path().join("confab.db-writer"))
        .expect("the store's write lock file");
    turn.lock().expect("another node's turn");

    alice.send(
        json!({"type": "send", "ref": "s1", "conversation": conversation,
                      "client_msg_id": "s1", "body": "hello"}),
    );
    // The session reads the send and queues it; the writer waits for the turn.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = alice.flushes.load(Ordering::SeqCst);
    let committed = server.sink.batches.load(Ordering::SeqCst);
    turn.unlock().expect("the turn ends");
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.sink.batches.load(Ordering::SeqCst) == committed {
        assert!(std::time::Instant::now() < deadline, "no commit in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Published and answered right after the commit, on the writer's thread.
    std::thread::sleep(Duration::from_millis(100));

    let mut kinds = vec![
        alice.frame().await["type"].as_str().map(str::to_owned),
        alice.frame().await["type"].as_str().map(str::to_owned),
    ];
    kinds.sort();
    assert_eq!(kinds, [Some("ack".to_owned()), Some("message".to_owned())]);
    assert_eq!(alice.flushes.load(Ordering::SeqCst) - before, 1);
}
