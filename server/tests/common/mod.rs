//! The harness shared by the integration tests: it runs the real `confab` binary on an ephemeral
//! port (`--listen 127.0.0.1:0`, read back from the line it prints once bound) with its own data
//! dir, and talks to it over real sockets (a small WebSocket client over
//! `tokio-tungstenite` and a JSON HTTP client over `reqwest`).
//!
//! - [`Server`]: spawn, wait for `/ready`, kill (`-9` or `TERM`), restart on the same data dir
//!   (on a new ephemeral port); the server's stdout and stderr go to a file that is printed when a test panics.
//! - [`WsClient`]: connect (header, `?token=`, or an `auth` frame), send [`ClientFrame`]s,
//!   receive [`ServerFrame`]s with a timeout; frames skipped while waiting for a specific one
//!   are kept and handed out later, so a test never loses a frame by looking for another.
//! - Tokens are minted in-process with the server's own [`JwtKeys`].

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use confab_protocol::rest::Message as RestMessage;
use confab_protocol::{ClientFrame, Command, ErrorCode, ServerFrame};
use confab_server::auth::JwtKeys;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

/// The HS256 secret every test server is started with.
pub const SECRET: &str = "confab-integration-tests-secret-0123456789abcdef";
/// The tenant of [`token`].
pub const TENANT: &str = "acme";
/// How long a client waits for an expected frame.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the harness waits for a server to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The test keys (same secret as the server).
pub fn keys() -> JwtKeys {
    JwtKeys::from_secret(SECRET.as_bytes()).expect("test secret is long enough")
}

/// A one-hour token for `user` in [`TENANT`].
pub fn token(user: &str) -> String {
    token_in(user, TENANT)
}

/// A one-hour token for `user` in `tenant`.
pub fn token_in(user: &str, tenant: &str) -> String {
    keys()
        .mint(user, tenant, None, Duration::from_secs(3600))
        .expect("mint token")
}

/// The `confab` binary with its stdout and stderr to `log` (uncoloured), no stdin, and no
/// `CONFAB_*` variable from the test's environment configuring it behind the test's back.
pub fn confab_command(log: std::fs::File) -> Process {
    let mut command = Process::new(env!("CARGO_BIN_EXE_confab"));
    let stdout = log.try_clone().expect("share the server log with stdout");
    command
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CONFAB_") {
            command.env_remove(key);
        }
    }
    command
}

/// The port of the line `confab serve` prints on stdout once bound,
/// `{"listening":"127.0.0.1:PORT"}`, found in `log`.
pub fn listening_port(log: &str) -> Option<u16> {
    log.lines().find_map(|line| {
        let line: Value = serde_json::from_str(line).ok()?;
        let addr: SocketAddr = line.get("listening")?.as_str()?.parse().ok()?;
        Some(addr.port())
    })
}

/// Why a spawned server is not serving (the message carries its log).
enum NotReady {
    Exited(String),
    TimedOut(String),
}

/// A running `confab serve` process.
pub struct Server {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
    /// Where the current process's output starts in the log (restarts append to it).
    log_from: u64,
    http: reqwest::Client,
}

impl Server {
    /// Starts a server with the default test flags.
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Starts a server with extra flags given as `["--flag", "value", ...]`; a flag given here
    /// replaces the harness default for it.
    pub async fn start_with(extra: &[&str]) -> Server {
        assert!(
            extra.len().is_multiple_of(2),
            "flags come in `--flag value` pairs: {extra:?}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data").display().to_string();
        let mut flags: Vec<(String, String)> = vec![
            ("--listen".into(), "127.0.0.1:0".into()),
            ("--data-dir".into(), data_dir),
            ("--message-rate-per-minute".into(), "0".into()),
            ("--jwt-secret".into(), SECRET.into()),
            ("--log".into(), "info,confab_server=debug".into()),
        ];
        for pair in extra.chunks(2) {
            flags.retain(|(flag, _)| flag != pair[0]);
            flags.push((pair[0].to_owned(), pair[1].to_owned()));
        }
        let mut args = vec!["serve".to_owned()];
        for (flag, value) in flags {
            args.push(flag);
            args.push(value);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("http client");
        let mut server = Server {
            port: 0,
            dir,
            args,
            child: None,
            log_from: 0,
            http,
        };
        server.spawn();
        server.wait_ready().await;
        server
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server(s) wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        self.port = 0;
        self.log_from = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server log");
        let child = confab_command(log)
            .args(&self.args)
            .spawn()
            .expect("spawn the confab binary");
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        if let Err(NotReady::Exited(why) | NotReady::TimedOut(why)) = self.try_ready().await {
            panic!("{why}");
        }
    }

    /// What this process logged since its spawn.
    fn own_log(&self) -> String {
        let log = self.log();
        log.get(self.log_from as usize..)
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until this process prints the port it bound and answers `/ready` on it.
    async fn try_ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(NotReady::Exited(format!(
                    "confab exited with {status} before it was ready; log:\n{}",
                    self.own_log()
                )));
            }
            if self.port == 0
                && let Some(port) = listening_port(&self.own_log())
            {
                self.port = port;
            }
            if self.port != 0 {
                let probe = self
                    .http
                    .get(format!("{}/ready", self.base()))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                if let Ok(response) = probe
                    && response.status().is_success()
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(NotReady::TimedOut(format!(
                    "confab was not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.own_log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server is running");
        let status = Process::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .expect("run kill -9");
        assert!(status.success(), "kill -9 failed");
        child.wait().expect("reap the killed server");
    }

    /// Sends SIGTERM (the server keeps running until it has shut down).
    pub fn sigterm(&self) {
        let status = Process::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the server process to exit and returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("server was started");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "confab did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts the server again on the same data dir and flags (after it stopped), on a new
    /// ephemeral port: clients connect again through [`Server::base`] and [`Server::ws_url`].
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        self.spawn();
        self.wait_ready().await;
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }

    // ---- HTTP ----

    /// Any request; the answer is the status and the body as JSON (`Null` when empty, a JSON
    /// string when the body is not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("HTTP {path}: {e}"));
        split_response(response).await
    }

    /// A request with a raw `Authorization` header value, content type and body.
    pub async fn request_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        authorization: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base()));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HTTP {path}: {e}"));
        split_response(response).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base()))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200, "GET /metrics");
        response.text().await.expect("metrics body")
    }

    // ---- domain helpers ----

    /// Creates a group owned by `owner` with `members`; returns its id.
    pub async fn create_group(&self, owner: &str, members: &[&str]) -> String {
        let body = json!({"kind": "group", "title": "test group", "members": members});
        let (status, conversation) = self.post("/v1/conversations", &token(owner), body).await;
        assert_eq!(status, 201, "create group: {conversation}");
        conversation["id"]
            .as_str()
            .expect("conversation id")
            .to_owned()
    }

    /// Sends a message over REST; the answer must be 201 or 200.
    pub async fn rest_send(
        &self,
        user: &str,
        conversation: &str,
        client_msg_id: &str,
        body: &str,
    ) -> Value {
        let (status, result) = self
            .post(
                &format!("/v1/conversations/{conversation}/messages"),
                &token(user),
                json!({"client_msg_id": client_msg_id, "body": body}),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "send over REST: {status} {result}"
        );
        result
    }

    /// Up to 200 messages of history, oldest first, as `user` sees them.
    pub async fn history(&self, user: &str, conversation: &str) -> Vec<RestMessage> {
        let (status, page) = self
            .get(
                &format!("/v1/conversations/{conversation}/messages?limit=200"),
                &token(user),
            )
            .await;
        assert_eq!(status, 200, "history: {page}");
        serde_json::from_value(page["messages"].clone()).expect("history parses as Vec<Message>")
    }

    // ---- WebSocket ----

    /// Connects as `user` with `Authorization: Bearer` and reads the `welcome`.
    pub async fn ws(&self, user: &str) -> WsClient {
        self.ws_with_token(&token(user)).await
    }

    /// Connects with a bearer token and reads the `welcome`.
    pub async fn ws_with_token(&self, token: &str) -> WsClient {
        let mut request = self.ws_url().into_client_request().expect("ws request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        let mut client = WsClient::open(request, None)
            .await
            .expect("websocket upgrade");
        client.expect_welcome().await;
        client
    }

    /// Connects with `?token=` and reads the `welcome`.
    pub async fn ws_query_token(&self, token: &str) -> WsClient {
        let url = format!("{}?token={token}", self.ws_url());
        let mut client = WsClient::open(url.into_client_request().expect("ws request"), None)
            .await
            .expect("websocket upgrade");
        client.expect_welcome().await;
        client
    }

    /// Connects as `user` with `?presence=true` (and `?token=`) and reads the `welcome`.
    pub async fn ws_presence(&self, user: &str) -> WsClient {
        let url = format!("{}?presence=true&token={}", self.ws_url(), token(user));
        let mut client = WsClient::open(url.into_client_request().expect("ws request"), None)
            .await
            .expect("websocket upgrade");
        client.expect_welcome().await;
        client
    }

    /// Connects without a token (the client must send `auth`); reads nothing.
    pub async fn ws_anonymous(&self) -> WsClient {
        WsClient::open(
            self.ws_url().into_client_request().expect("ws request"),
            None,
        )
        .await
        .expect("websocket upgrade")
    }

    /// Connects as `user` through a socket with a tiny receive buffer (for a client that
    /// stops reading: the kernel absorbs little); reads the `welcome`.
    pub async fn ws_small_buffer(&self, user: &str) -> WsClient {
        let mut request = self.ws_url().into_client_request().expect("ws request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", token(user))
                .parse()
                .expect("header value"),
        );
        let mut client = WsClient::open(request, Some(4096))
            .await
            .expect("websocket upgrade");
        client.expect_welcome().await;
        client
    }

    /// Tries an upgrade that must be refused; returns the HTTP status and JSON body.
    pub async fn ws_refused(
        &self,
        request: tungstenite::handshake::client::Request,
    ) -> (u16, Value) {
        match WsClient::open(request, None).await {
            Ok(_) => panic!("the upgrade was accepted"),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .and_then(|bytes| serde_json::from_slice(bytes).ok())
                    .unwrap_or(Value::Null);
                (status, body)
            }
            Err(other) => panic!("upgrade failed without an HTTP answer: {other}"),
        }
    }
}

async fn split_response(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("response body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- confab server log (port {}) ----\n{}---- end of log ----",
                self.port,
                self.log()
            );
        }
    }
}

/// The value of a Prometheus metric (the sum over its label sets), if present.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// The `ref` a server frame echoes, if any.
pub fn frame_ref(frame: &ServerFrame) -> Option<&str> {
    match frame {
        ServerFrame::Joined { reference, .. }
        | ServerFrame::Left { reference, .. }
        | ServerFrame::Ack { reference, .. }
        | ServerFrame::Ok { reference, .. }
        | ServerFrame::Pong { reference }
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

    async fn expect_welcome(&mut self) {
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

/// Asserts a REST error answer: status, and `{"error":{"code":..,"message":..}}`.
#[track_caller]
pub fn assert_rest_error(answer: &(u16, Value), status: u16, code: ErrorCode) {
    let (got_status, body) = answer;
    assert_eq!(*got_status, status, "status of {body}");
    assert_eq!(
        body["error"]["code"].as_str(),
        Some(code.as_str()),
        "error code in {body}"
    );
    assert!(
        body["error"]["message"].is_string(),
        "error message in {body}"
    );
}
