//! A WebSocket client of the test server: connect (header, `?token=`, or an `auth` frame), send
//! [`ClientFrame`]s, receive [`ServerFrame`]s with a timeout; frames skipped while waiting for a
//! specific one are kept and handed out later, so a test never loses a frame by looking for
//! another.

use std::collections::VecDeque;
use std::time::Duration;

use confab_protocol::{ClientFrame, Command, ErrorCode, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use super::RECV_TIMEOUT;

/// The `ref` a server frame echoes, if any.
pub fn frame_ref(frame: &ServerFrame) -> Option<&str> {
    match frame {
        ServerFrame::Joined { reference, .. }
        | ServerFrame::Left { reference, .. }
        | ServerFrame::Ack { reference, .. }
        | ServerFrame::Ok { reference, .. }
        | ServerFrame::Pong { reference }
        | ServerFrame::UserSync { reference, .. }
        | ServerFrame::Error { reference, .. } => reference.as_deref(),
        _ => None,
    }
}

/// The wire `type` of a server frame.
pub fn frame_type(frame: &ServerFrame) -> String {
    let value = serde_json::to_value(frame).expect("serialize frame");
    value["type"].as_str().unwrap_or("?").to_owned()
}

/// What an `ack` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub id: String,
    pub seq: u64,
    pub duplicate: bool,
}

/// How a connection ended.
#[derive(Debug)]
pub struct Closed {
    /// The close frame's code, or `None` when the connection ended without one.
    pub code: Option<u16>,
    /// Text frames received before the close.
    pub frames: Vec<ServerFrame>,
    /// The read error that ended the connection, when it did not end with a close frame.
    pub error: Option<String>,
}

type Ws = WebSocketStream<TcpStream>;

/// A WebSocket client of the test server.
pub struct WsClient {
    ws: Ws,
    /// Frames received while waiting for another one, handed out first.
    buffered: VecDeque<ServerFrame>,
    next_ref: u64,
    /// The `welcome` frame, once received.
    pub welcome: Option<ServerFrame>,
    /// How long `recv` and `recv_until` wait for the next frame ([`RECV_TIMEOUT`] unless set
    /// with [`WsClient::patient`]).
    recv_timeout: Duration,
}

impl WsClient {
    /// Opens a WebSocket over a fresh TCP connection (optionally with a small receive buffer).
    pub async fn open(
        request: tungstenite::handshake::client::Request,
        recv_buffer: Option<u32>,
    ) -> Result<WsClient, tungstenite::Error> {
        let host = request.uri().host().expect("host").to_owned();
        let port = request.uri().port_u16().expect("port");
        let addr: std::net::SocketAddr = format!("{host}:{port}").parse().expect("socket addr");
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = socket.connect(addr).await.map_err(tungstenite::Error::Io)?;
        let (ws, _response) = tokio_tungstenite::client_async(request, stream).await?;
        Ok(WsClient {
            ws,
            buffered: VecDeque::new(),
            next_ref: 0,
            welcome: None,
            recv_timeout: RECV_TIMEOUT,
        })
    }

    /// Waits up to `timeout` for each frame instead of [`RECV_TIMEOUT`] (for slow backends).
    pub fn patient(mut self, timeout: Duration) -> WsClient {
        self.recv_timeout = timeout;
        self
    }

    pub async fn expect_welcome(&mut self) {
        let frame = self.recv().await;
        assert!(
            matches!(frame, ServerFrame::Welcome { .. }),
            "expected welcome, got {frame:?}"
        );
        self.welcome = Some(frame);
    }

    /// A fresh `ref`.
    pub fn new_ref(&mut self) -> String {
        self.next_ref += 1;
        format!("r{}", self.next_ref)
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("websocket send");
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.send_raw(Message::text(text.into())).await;
    }

    pub async fn send(&mut self, frame: ClientFrame) {
        let text = serde_json::to_string(&frame).expect("serialize client frame");
        self.send_text(text).await;
    }

    /// Sends a command without `ref`.
    pub async fn send_command(&mut self, command: Command) {
        self.send(ClientFrame::new(command)).await;
    }

    /// The next WebSocket message of any kind, or `None` after `timeout`. A read error is
    /// turned into `Err` with its text; the end of the stream into `Ok(None)`-like `Err`.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Result<Message, String>> {
        match tokio::time::timeout(timeout, self.ws.next()).await {
            Err(_) => None,
            Ok(None) => Some(Err("stream ended".to_owned())),
            Ok(Some(Err(err))) => Some(Err(err.to_string())),
            Ok(Some(Ok(message))) => Some(Ok(message)),
        }
    }

    /// The next server frame within `timeout`, skipping WebSocket pings and pongs; `None` on
    /// timeout. Panics if the connection closes or a frame does not parse.
    pub async fn try_recv(&mut self, timeout: Duration) -> Option<ServerFrame> {
        if let Some(frame) = self.buffered.pop_front() {
            return Some(frame);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await? {
                Ok(Message::Text(text)) => {
                    return Some(
                        serde_json::from_str(&text).unwrap_or_else(|e| {
                            panic!("server frame does not parse ({e}): {text}")
                        }),
                    );
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Binary(bytes)) => {
                    panic!("unexpected binary frame of {} bytes", bytes.len())
                }
                Ok(Message::Close(frame)) => {
                    panic!("connection closed while waiting for a frame: {frame:?}")
                }
                Err(err) => panic!("connection failed while waiting for a frame: {err}"),
            }
        }
    }

    /// The next server frame (within the receive timeout, [`RECV_TIMEOUT`] by default).
    pub async fn recv(&mut self) -> ServerFrame {
        let timeout = self.recv_timeout;
        match self.try_recv(timeout).await {
            Some(frame) => frame,
            None => panic!("no frame within {timeout:?}"),
        }
    }

    /// The first frame matching `predicate` (within the receive timeout of the last frame); the
    /// frames skipped on the way are kept for later `recv`s, in order.
    pub async fn recv_until(
        &mut self,
        mut predicate: impl FnMut(&ServerFrame) -> bool,
    ) -> ServerFrame {
        if let Some(index) = self.buffered.iter().position(&mut predicate) {
            return self.buffered.remove(index).expect("index is in range");
        }
        let mut skipped = Vec::new();
        let timeout = self.recv_timeout;
        let found = loop {
            let frame = match self.next_live(timeout).await {
                Some(frame) => frame,
                None => panic!("no matching frame within {timeout:?}; skipped: {skipped:?}"),
            };
            if predicate(&frame) {
                break frame;
            }
            skipped.push(frame);
        };
        self.buffered.extend(skipped);
        found
    }

    /// Forgets the buffered user events (`conversation_added`, `read_moved`, …): for tests about
    /// conversation frames that then expect silence.
    pub fn drop_user_events(&mut self) {
        self.buffered.retain(|frame| frame.user_seq().is_none());
    }

    /// Like `try_recv` but bypassing the buffer.
    async fn next_live(&mut self, timeout: Duration) -> Option<ServerFrame> {
        let buffered = std::mem::take(&mut self.buffered);
        let frame = self.try_recv(timeout).await;
        self.buffered = buffered;
        frame
    }

    /// The reply (or error) to the command with `reference`.
    pub async fn reply_to(&mut self, reference: &str) -> ServerFrame {
        self.recv_until(|frame| frame_ref(frame) == Some(reference))
            .await
    }

    /// Sends `command` with a fresh `ref` and returns its reply (or error).
    pub async fn request(&mut self, command: Command) -> ServerFrame {
        let reference = self.new_ref();
        self.send(ClientFrame::with_ref(reference.clone(), command))
            .await;
        self.reply_to(&reference).await
    }

    /// Sends `command` and expects an `error` with `code`; returns its message.
    pub async fn expect_error(&mut self, command: Command, code: ErrorCode) -> String {
        match self.request(command.clone()).await {
            ServerFrame::Error {
                code: got, message, ..
            } if got == code => message,
            other => panic!("{command:?}: expected error {code}, got {other:?}"),
        }
    }

    /// Sends a text frame with `ref` set inside and expects an `error` with `code` and that ref.
    pub async fn expect_text_error(
        &mut self,
        text: &str,
        reference: Option<&str>,
        code: ErrorCode,
    ) {
        self.send_text(text).await;
        let frame = self
            .recv_until(|f| matches!(f, ServerFrame::Error { .. }))
            .await;
        match frame {
            ServerFrame::Error {
                reference: got_ref,
                code: got,
                ..
            } => {
                assert_eq!(got, code, "error code for {text:.200}");
                assert_eq!(got_ref.as_deref(), reference, "error ref for {text:.200}");
            }
            other => unreachable!("{other:?}"),
        }
    }

    /// Asserts that no text frame arrives for `duration` (WebSocket pings are ignored).
    pub async fn expect_silence(&mut self, duration: Duration) {
        if let Some(frame) = self.buffered.front() {
            panic!("expected silence, but a frame is pending: {frame:?}");
        }
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_message(left).await {
                None => return,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Reads until the connection closes (within `timeout`); returns the close code and the
    /// frames received before it.
    pub async fn expect_close(&mut self, timeout: Duration) -> Closed {
        let mut frames: Vec<ServerFrame> = self.buffered.drain(..).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await {
                None => panic!(
                    "connection still open after {timeout:?}; {} frames received, last: {:?}",
                    frames.len(),
                    frames.last()
                ),
                Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                    Ok(frame) => frames.push(frame),
                    Err(e) => panic!("server frame does not parse ({e}): {text}"),
                },
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|CloseFrame { code, .. }| u16::from(code));
                    return Closed {
                        code,
                        frames,
                        error: None,
                    };
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => {
                    return Closed {
                        code: None,
                        frames,
                        error: Some(error),
                    };
                }
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    // ---- command helpers ----

    /// Joins `conversation` (no `since`); returns `last_seq`.
    pub async fn join(&mut self, conversation: &str) -> u64 {
        let command = Command::Join {
            conversation: conversation.to_owned(),
            since: None,
        };
        match self.request(command).await {
            ServerFrame::Joined {
                last_seq,
                recovered,
                ..
            } => {
                assert!(recovered, "a join without since is always recovered");
                last_seq
            }
            other => panic!("join {conversation}: {other:?}"),
        }
    }

    /// Joins with `since`; returns `(last_seq, recovered)`. The replayed events follow.
    pub async fn join_since(&mut self, conversation: &str, since: u64) -> (u64, bool) {
        let command = Command::Join {
            conversation: conversation.to_owned(),
            since: Some(since),
        };
        match self.request(command).await {
            ServerFrame::Joined {
                last_seq,
                recovered,
                ..
            } => (last_seq, recovered),
            other => panic!("join {conversation} since {since}: {other:?}"),
        }
    }

    /// Sends a message and waits for its `ack`.
    pub async fn send_message(
        &mut self,
        conversation: &str,
        client_msg_id: &str,
        body: &str,
    ) -> Acked {
        let command = send_command(conversation, client_msg_id, body);
        match self.request(command).await {
            ServerFrame::Ack {
                id,
                seq,
                duplicate,
                client_msg_id: acked,
                conversation: c,
                ..
            } => {
                assert_eq!(acked, client_msg_id);
                assert_eq!(c, conversation);
                Acked { id, seq, duplicate }
            }
            other => panic!("send {client_msg_id}: expected ack, got {other:?}"),
        }
    }

    /// Sends a command that answers `ok`; returns its `seq`.
    pub async fn expect_ok(&mut self, command: Command) -> Option<u64> {
        match self.request(command.clone()).await {
            ServerFrame::Ok { seq, .. } => seq,
            other => panic!("{command:?}: expected ok, got {other:?}"),
        }
    }

    /// The next `message` event.
    pub async fn recv_message(&mut self) -> confab_protocol::frames::MessageEvent {
        match self
            .recv_until(|f| matches!(f, ServerFrame::Message(_)))
            .await
        {
            ServerFrame::Message(message) => message,
            other => unreachable!("{other:?}"),
        }
    }

    /// Drops every buffered frame (after a test has checked what it needed).
    pub fn clear_buffer(&mut self) {
        self.buffered.clear();
    }

    /// The buffered frames (received but not yet handed out).
    pub fn buffered(&self) -> &VecDeque<ServerFrame> {
        &self.buffered
    }
}

/// A `send` command without reply or attachments.
pub fn send_command(conversation: &str, client_msg_id: &str, body: &str) -> Command {
    Command::Send {
        conversation: conversation.to_owned(),
        client_msg_id: client_msg_id.to_owned(),
        body: body.to_owned(),
        reply_to: None,
        attachments: Vec::new(),
    }
}
