//! Opening WebSocket connections: TCP (optionally from one of several loopback source
//! addresses, since one source address has only ~28,000 ephemeral ports towards one server
//! port), the upgrade with `Authorization: Bearer`, then waiting for `welcome` and `joined`.
//!
//! Clients are kept cheap: small read buffer, no write buffering, `TCP_NODELAY`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// How long opening one connection (TCP, upgrade, `welcome`, `joined`) may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Frame prefixes the generator recognizes (serde writes the `type` tag first).
pub mod prefix {
    pub const WELCOME: &str = r#"{"type":"welcome""#;
    pub const JOINED: &str = r#"{"type":"joined""#;
    pub const MESSAGE: &str = r#"{"type":"message""#;
    pub const ACK: &str = r#"{"type":"ack""#;
    pub const ERROR: &str = r#"{"type":"error""#;
}

/// The server, as the generator connects to it.
pub struct Endpoint {
    server: SocketAddr,
    ws_url: String,
    sources: Vec<IpAddr>,
    config: WebSocketConfig,
}

impl Endpoint {
    /// `base_url` is `http://host:port` and must be a loopback address: load is only ever sent
    /// to this machine. With `source_ips > 1`, connection `i` binds to `127.0.0.(1 + i % n)`.
    pub fn new(base_url: &str, source_ips: u8) -> anyhow::Result<Endpoint> {
        let sources = (1..=source_ips)
            .filter(|_| source_ips > 1)
            .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .collect();
        Endpoint::with_sources(base_url, sources)
    }

    /// Like [`Endpoint::new`], with connection `i` bound to `sources[i % n]` (none: the
    /// kernel's choice). The scale workers each take their own range of 127.0.0.0/8.
    pub fn with_sources(base_url: &str, sources: Vec<IpAddr>) -> anyhow::Result<Endpoint> {
        let authority = base_url
            .strip_prefix("http://")
            .context("--url must start with http://")?
            .trim_end_matches('/');
        let server = authority
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))?;
        if !server.ip().is_loopback() {
            bail!("refusing to load {server}: the generator only targets loopback addresses");
        }
        if !sources.is_empty() && !server.is_ipv4() {
            bail!("source addresses need an IPv4 loopback server address");
        }
        if let Some(source) = sources.iter().find(|s| !s.is_loopback()) {
            bail!("source address {source} is not a loopback address");
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0)
            .max_write_buffer_size(1 << 20);
        Ok(Endpoint {
            server,
            ws_url: format!("ws://{authority}/v1/ws"),
            sources,
            config,
        })
    }

    /// Opens connection number `index` with `token` on the upgrade request.
    pub async fn connect(&self, index: usize, token: &str) -> anyhow::Result<Ws> {
        let stream = match self.sources.get(index % self.sources.len().max(1)) {
            Some(source) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(*source, 0))?;
                socket.connect(self.server).await?
            }
            None => TcpStream::connect(self.server).await?,
        };
        stream.set_nodelay(true)?;
        let mut request = self.ws_url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(self.config))
                .await
                .context("websocket upgrade")?;
        Ok(ws)
    }
}

/// Reads frames until a text frame starting with `wanted`; an `error` frame or a close fails.
pub async fn expect(ws: &mut Ws, wanted: &str) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if text.starts_with(wanted) {
                    return Ok(text.as_str().to_owned());
                }
                if text.starts_with(prefix::ERROR) {
                    bail!("server error while waiting for {wanted}: {}", text.as_str());
                }
            }
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Joins `conversation` and waits for `joined`.
pub async fn join(ws: &mut Ws, conversation: &str) -> anyhow::Result<()> {
    let frame = format!(r#"{{"type":"join","conversation":"{conversation}"}}"#);
    ws.send(Message::Text(frame.into())).await?;
    expect(ws, prefix::JOINED).await?;
    Ok(())
}

/// Closes politely: a close frame, then whatever the server still sends until its close, for at
/// most two seconds.
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if ws.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
