//! What the integration tests share: a Confab server started through `confab-testkit` (the one
//! harness that starts servers) with the test flags, and clients that talk to it over real
//! sockets: JSON over HTTP (`reqwest`) and WebSocket ([`WsClient`], in `ws.rs`).
//!
//! - [`Server`]: `confab serve` on an ephemeral port with its own data dir ([`ConfabServer`]
//!   does the process work: the listening line, `/ready`, `kill -9`, SIGTERM, restart), or, for
//!   tests that need no process of their own, the same configuration served in this process
//!   ([`Server::in_process`], through `confab_server::spawn`); plus HTTP, WebSocket and domain
//!   helpers bound to its address.
//! - Tokens are minted in-process with the server's own [`JwtKeys`].

#![allow(dead_code)]

mod ws;

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_protocol::ErrorCode;
use confab_protocol::rest::Message as RestMessage;
use confab_server::auth::JwtKeys;
use confab_server::config::{Config, ServeArgs};
use confab_server::hub::Hub;
use confab_server::{AppState, Running, fanout};
use confab_storage::sqlite::{SqliteOptions, SqliteStore};
use confab_testkit::{ConfabServer, RedisServer};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[allow(unused_imports)] // each test binary uses its own share of them
pub use ws::{Acked, Closed, WsClient, frame_ref, frame_type, send_command};

/// The HS256 secret every test server is started with.
pub const SECRET: &str = "confab-integration-tests-secret-0123456789abcdef";
/// The tenant of [`token`].
pub const TENANT: &str = "acme";
/// How long a client waits for an expected frame.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A one-hour token of an admin of [`TENANT`] (claim `"admin": true`), user `user`.
pub fn admin_token(user: &str) -> String {
    admin_token_in(user, TENANT)
}

/// A one-hour token of an admin of `tenant`, user `user`.
pub fn admin_token_in(user: &str, tenant: &str) -> String {
    keys()
        .mint_admin(user, tenant, None, Duration::from_secs(3600))
        .expect("mint token")
}

/// A running Confab server and an HTTP client for it.
pub struct Server {
    backend: Backend,
    http: reqwest::Client,
}

enum Backend {
    Process(ConfabServer),
    /// Its data directory is dropped after the server.
    InProcess(Running, tempfile::TempDir),
}

/// The value that removes one of the default test flags (`["--jwt-secret", UNSET]`).
pub const UNSET: &str = "<unset>";

/// The flags every test server starts with, `extra` replacing any of them ([`UNSET`] removing
/// one); `--data-dir` goes
/// apart (the process harness gives one of its own unless a test names it).
fn test_flags(extra: &[&str]) -> (Vec<String>, Option<String>) {
    assert!(
        extra.len().is_multiple_of(2),
        "flags come in `--flag value` pairs: {extra:?}"
    );
    let mut flags: Vec<(String, String)> = vec![
        ("--message-rate-per-minute".into(), "0".into()),
        // Tests act in bursts; the abuse tests turn these on.
        ("--reaction-rate-per-minute".into(), "0".into()),
        ("--edit-rate-per-minute".into(), "0".into()),
        ("--delete-rate-per-minute".into(), "0".into()),
        ("--join-rate-per-minute".into(), "0".into()),
        ("--rest-rate-per-minute".into(), "0".into()),
        ("--jwt-secret".into(), SECRET.into()),
        ("--log".into(), "info,confab_server=debug".into()),
    ];
    let mut data_dir = None;
    for pair in extra.chunks(2) {
        if pair[0] == "--data-dir" {
            data_dir = Some(pair[1].to_owned());
            // Nodes sharing a data dir each keep a search index of their own.
            if !extra.contains(&"--search-dir") {
                let own = format!("{}/search-{}", pair[1], uuid::Uuid::new_v4().simple());
                flags.push(("--search-dir".to_owned(), own));
            }
            continue;
        }
        flags.retain(|(flag, _)| flag != pair[0]);
        if pair[1] != UNSET {
            flags.push((pair[0].to_owned(), pair[1].to_owned()));
        }
    }
    let flags = flags
        .into_iter()
        .flat_map(|(flag, value)| [flag, value])
        .collect();
    (flags, data_dir)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

impl Server {
    /// Starts a server with the default test flags.
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Starts a server with extra flags given as `["--flag", "value", ...]`; a flag given here
    /// replaces the harness default for it (`--data-dir` too: several nodes may share one).
    pub async fn start_with(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[]).await
    }

    /// [`Server::start_with`], with environment variables for the server process.
    pub async fn start_with_env(extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let (flags, data_dir) = test_flags(extra);
        let mut builder = ConfabServer::builder(env!("CARGO_BIN_EXE_confab")).args(flags);
        for (key, value) in envs {
            builder = builder.env(*key, *value);
        }
        if let Some(data_dir) = data_dir {
            builder = builder.data_dir(data_dir);
        }
        let process = tokio::task::spawn_blocking(move || builder.start())
            .await
            .expect("join the starting task")
            .unwrap_or_else(|err| panic!("confab did not start: {err}"));
        Server {
            backend: Backend::Process(process),
            http: http_client(),
        }
    }

    /// Serves the configuration of the same flags in this process, on an ephemeral port, with
    /// the SQLite store in a temporary data dir and the hub the flags name; no metrics recorder,
    /// no event stream, nothing to kill or restart. Quicker to start than a process.
    pub async fn in_process(extra: &[&str]) -> Server {
        let (mut flags, data_dir) = test_flags(extra);
        assert!(
            data_dir.is_none(),
            "an in-process server has a data dir of its own"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        flags.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        flags.extend(["--data-dir".to_owned(), dir.path().display().to_string()]);
        let args = ServeArgs::try_parse_from(flags).expect("test flags parse");
        let config = Config::resolve(args).expect("test flags are a valid configuration");
        let keys = JwtKeys::load(&config.jwt(), &config.data_dir)
            .expect("keys")
            .with_claims(config.jwt_issuer.as_deref(), config.jwt_audience.as_deref());
        let link = fanout::start(&config.hub).await.expect("fan-out");
        let hub = Hub::start(link);
        let search = confab_server::search::SearchService::for_config(&config).expect("search");
        let store = SqliteStore::open(
            &config.data_dir.join("confab.db"),
            search.sink(hub.clone()),
            SqliteOptions::default(),
        )
        .expect("open the store");
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind");
        let media = confab_server::media::MediaService::new(
            confab_server::media::open(&config).expect("media"),
            &config,
            &keys,
            None,
        );
        let state = AppState::new(config, Arc::new(store), media, search, hub, keys, None);
        let running = confab_server::spawn(listener, state).expect("serve");
        Server {
            backend: Backend::InProcess(running, dir),
            http: http_client(),
        }
    }

    fn process(&mut self) -> &mut ConfabServer {
        match &mut self.backend {
            Backend::Process(process) => process,
            Backend::InProcess(..) => panic!("this test needs a server process: Server::start"),
        }
    }

    fn process_ref(&self) -> &ConfabServer {
        match &self.backend {
            Backend::Process(process) => process,
            Backend::InProcess(..) => panic!("this test needs a server process: Server::start"),
        }
    }

    fn addr(&self) -> SocketAddr {
        match &self.backend {
            Backend::Process(process) => process.addr(),
            Backend::InProcess(running, _) => running.addr(),
        }
    }

    /// The port of the running (or last) server.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Everything the server process wrote so far, over its restarts.
    pub fn log(&self) -> String {
        self.process_ref().log()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.process_ref().pid().expect("the server is running")
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        self.process().kill9().expect("kill -9 the server");
    }

    /// Sends SIGTERM (the server keeps running until it has shut down).
    pub fn sigterm(&mut self) {
        self.process().terminate().expect("SIGTERM the server");
    }

    /// Waits for the server process to exit and returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process().try_wait().expect("the server was running") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "confab did not exit within {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts the server again on the same data dir and flags (after it stopped), on a new
    /// ephemeral port: clients connect again through [`Server::base`] and [`Server::ws_url`].
    pub async fn restart(&mut self) {
        self.process()
            .restart()
            .unwrap_or_else(|err| panic!("confab did not restart: {err}"));
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr())
    }

    // ---- HTTP ----

    /// The HTTP client, for requests the helpers below do not cover (headers, raw bodies).
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

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

    // ---- media ----

    /// `POST /v1/media` with `bearer`'s token: a file (and its conversation, if any).
    pub async fn upload_as(
        &self,
        bearer: &str,
        name: &str,
        bytes: &[u8],
        conversation: Option<&str>,
    ) -> (u16, Value) {
        let authorization = format!("Bearer {bearer}");
        self.upload_raw(Some(&authorization), name, bytes, conversation)
            .await
    }

    /// `POST /v1/media` with a raw `Authorization` header value, or none.
    pub async fn upload_raw(
        &self,
        authorization: Option<&str>,
        name: &str,
        bytes: &[u8],
        conversation: Option<&str>,
    ) -> (u16, Value) {
        let (content_type, body) = form(name, bytes, conversation);
        self.request_raw(
            reqwest::Method::POST,
            "/v1/media",
            authorization,
            Some(&content_type),
            body,
        )
        .await
    }

    /// Uploads a file of `user`'s; it must be accepted (201).
    pub async fn upload(&self, user: &str, name: &str, bytes: &[u8]) -> Value {
        let answer = self.upload_as(&token(user), name, bytes, None).await;
        assert_eq!(answer.0, 201, "{answer:?}");
        answer.1
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

/// A `multipart/form-data` body with a file part (and a conversation, if any).
fn form(name: &str, bytes: &[u8], conversation: Option<&str>) -> (String, Vec<u8>) {
    let boundary = "confab-test-boundary-7d1f";
    let mut body = Vec::new();
    if let Some(conversation) = conversation {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"conversation\"\r\n\r\n{conversation}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
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

/// Starts `count` redis-servers on free loopback ports, for a cluster's hub (one, or the shards
/// of a sharded fan-out); fails loudly when one cannot start.
pub async fn redis_servers(count: usize) -> Vec<RedisServer> {
    tokio::task::spawn_blocking(move || RedisServer::start_many(count))
        .await
        .expect("join")
        .expect("redis-server starts (run scripts/install-test-services)")
}

/// The `--hub` value naming `servers` in order: `redis://…,redis://…`.
pub fn hub_of(servers: &[RedisServer]) -> String {
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    urls.join(",")
}

/// The position, among `shards` servers, of the one carrying the room of `conversation` in
/// [`TENANT`] (the fan-out's own placement).
pub fn shard_of(conversation: &str, shards: usize) -> usize {
    fanout::redis::shard_of(TENANT, conversation, shards)
}

/// The fan-out's room channels (`confab:…`, not the nodes' channel) that have subscribers on
/// the Redis at `redis_url`.
pub async fn room_channels(redis_url: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("confab:*")
        .query_async(&mut conn)
        .await
        .expect("PUBSUB CHANNELS");
    channels.retain(|c| c != "confab:nodes");
    channels.sort();
    channels
}

/// Waits (up to 10 s) until `nodes` servers subscribe on the Redis at `redis_url` to the room of
/// `conversation` in [`TENANT`] (the fan-out's channel `confab:{tenant}:{conversation}`): until a
/// node has subscribed, events from the other nodes do not reach its sessions.
pub async fn wait_for_subscribers(redis_url: &str, conversation: &str, nodes: usize) {
    let channel = format!("confab:{TENANT}:{conversation}");
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, subscribers): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .expect("PUBSUB NUMSUB");
        if subscribers == nodes {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel} has {subscribers} subscribers, expected {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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
