//! The accept loop: every TCP connection the server takes, with the defences a public server
//! needs against clients that hold connections without using them (slowloris).
//!
//! - **Header read**: a request's line and headers must arrive within `header_read_timeout`,
//!   counted from their first byte (from the accept, for a new connection that stays silent).
//! - **Keep-alive idle**: a connection with no request in progress is closed after
//!   `keep_alive_timeout` without a byte.
//! - **Body read**: each piece of a request body must arrive within `body_read_timeout` of the
//!   previous one ([`TimeoutBody`]); a handler that reads a body too slowly answers `timeout`.
//! - **Connection cap and descriptors**: past `max_connections`, or when `accept` fails for
//!   want of file descriptors, the oldest connection still speaking plain HTTP (not yet an
//!   upgraded WebSocket, so not authenticated) is shed, preferring one with no request in
//!   progress, and accepting goes on.
//!
//! A connection leaves this module's watch once it is upgraded to a WebSocket: from then on the
//! session's own `auth_timeout` and `idle_timeout` apply. Only the open-connection count (one
//! pointer in the upgraded stream) stays with it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::TimeoutBody;
use tower_service::Service;

use crate::metrics;

/// The connection-level limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(30),
            max_connections: 100_000,
        }
    }
}

/// How long to wait before accepting again when descriptors ran out and nothing could be shed:
/// the kernel keeps new clients in the listen backlog meanwhile.
const NO_DESCRIPTOR_BACKOFF: Duration = Duration::from_millis(50);
/// After shedding for descriptors, a moment for the shed connection's task to close its socket;
/// retrying at once would shed another before the first descriptor is back.
const SHED_SETTLE: Duration = Duration::from_millis(2);

/// Serves `router` on `listener` until `shutdown` is cancelled, then asks every HTTP connection to
/// finish its request and close, and waits for them (upgraded WebSockets are the sessions' own).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry::new(limits));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                on_accept_error(&registry, &err).await;
                continue;
            }
        };
        if registry.open() >= limits.max_connections && !registry.shed_oldest(Shed::Cap) {
            metrics::connection_refused();
            drop(stream);
            continue;
        }
        // Chat frames are small and latency-bound: no Nagle delay.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let conn = registry.register();
        connections.spawn(serve_connection(
            registry.clone(),
            conn,
            stream,
            peer,
            router.clone(),
            shutdown.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
}

/// Keeps the loop accepting whatever `accept` says: out of descriptors sheds the oldest HTTP
/// connection, a client that gave up is skipped, anything else backs off a little.
async fn on_accept_error(registry: &Registry, err: &std::io::Error) {
    match err.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            if registry.shed_oldest(Shed::Descriptors) {
                tokio::time::sleep(SHED_SETTLE).await;
            } else {
                tracing::warn!(error = %err, open = registry.open(), "out of descriptors with nothing to shed");
                tokio::time::sleep(NO_DESCRIPTOR_BACKOFF).await;
            }
        }
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::ECONNREFUSED | libc::EINTR) => {}
        _ => {
            tracing::error!(error = %err, "accept failed");
            tokio::time::sleep(NO_DESCRIPTOR_BACKOFF).await;
        }
    }
}

/// One connection: hyper's HTTP/1 server plus a watchdog for the timeouts of the module docs.
async fn serve_connection(
    registry: Arc<Registry>,
    conn: Arc<Conn>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) {
    let limits = registry.limits;
    let io = TokioIo::new(GuardedIo {
        stream,
        conn: Some(conn.clone()),
        _open: OpenSlot(registry.clone()),
    });
    let service = {
        let conn = conn.clone();
        let registry = registry.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = InFlight::start(conn.clone(), registry.clone());
            let req = req.map(|body| Body::new(TimeoutBody::new(limits.body_read_timeout, body)));
            let response = router.clone().call(req);
            async move {
                let response = match response.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(TrackedBody {
                        inner: body,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own head timer starts whenever it waits for a head, idle time included: it is only
    // the backstop behind the watchdog below, which times idle and head separately.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.keep_alive_timeout + limits.header_read_timeout);
    let mut served = pin!(builder.serve_connection(io, service).with_upgrades());
    let mut draining = false;
    loop {
        let deadline = match registry.verdict(&conn) {
            Verdict::WaitUntil(deadline) => deadline,
            Verdict::Close(phase) => {
                metrics::http_timeout(phase.as_str());
                tracing::debug!(%peer, phase = phase.as_str(), "closing a connection that timed out");
                break;
            }
        };
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "http connection ended with an error");
                }
                break;
            }
            () = conn.shed.notified() => {
                tracing::debug!(%peer, "shedding an http connection");
                break;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                served.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
    conn.detached.store(true, Ordering::Relaxed);
    registry.forget(conn.id);
}

/// Why a connection was closed by the watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its request line and headers did not arrive in time (a new connection that stays silent
    /// counts here too).
    Header,
    /// Kept alive with no request for too long.
    Idle,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Header => "header",
            Phase::Idle => "idle",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    WaitUntil(Instant),
    Close(Phase),
}

/// Why a connection is shed.
#[derive(Debug, Clone, Copy)]
enum Shed {
    Cap,
    Descriptors,
}

impl Shed {
    fn as_str(self) -> &'static str {
        match self {
            Shed::Cap => "max_connections",
            Shed::Descriptors => "descriptors",
        }
    }
}

/// "No head has started" in [`Conn::head_started`].
const NO_HEAD: u64 = u64::MAX;

/// What the watchdog, the reader and the request service share about one HTTP connection.
struct Conn {
    id: u64,
    /// Woken to drop the connection at once.
    shed: Notify,
    /// Requests whose response has not been written out yet.
    in_flight: AtomicU32,
    /// Whether any request has completed (a connection that never sent one gets the header
    /// timeout, not the keep-alive one).
    served_one: AtomicBool,
    /// Milliseconds since the registry's epoch when the connection last had nothing in
    /// progress (its accept, or its last response).
    idle_since: AtomicU64,
    /// Milliseconds since the epoch when the first byte of the next request arrived, or
    /// [`NO_HEAD`].
    head_started: AtomicU64,
    /// Set when the connection leaves HTTP (closed or upgraded): its reader stops tracking.
    detached: AtomicBool,
}

/// Every open connection: the count, and those still speaking HTTP, oldest first.
struct Registry {
    limits: ConnLimits,
    epoch: Instant,
    open: AtomicUsize,
    next_id: AtomicU64,
    http: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn new(limits: ConnLimits) -> Registry {
        Registry {
            limits,
            epoch: Instant::now(),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            http: Mutex::new(BTreeMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a new connection and lists it as speaking HTTP.
    fn register(&self) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            shed: Notify::new(),
            in_flight: AtomicU32::new(0),
            served_one: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.now_ms()),
            head_started: AtomicU64::new(NO_HEAD),
            detached: AtomicBool::new(false),
        });
        self.open.fetch_add(1, Ordering::Relaxed);
        metrics::tcp_connection_opened();
        metrics::http_connections(1.0);
        self.http
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, conn.clone());
        conn
    }

    /// The connection no longer speaks HTTP (closed, or upgraded to a WebSocket).
    fn forget(&self, id: u64) {
        let removed = self
            .http
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if removed.is_some() {
            metrics::http_connections(-1.0);
        }
    }

    /// Sheds the oldest HTTP connection with no request in progress, else the oldest one.
    /// False when there is none.
    fn shed_oldest(&self, reason: Shed) -> bool {
        let victim = {
            let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
            let id = http
                .iter()
                .find(|(_, conn)| conn.in_flight.load(Ordering::Relaxed) == 0)
                .or_else(|| http.iter().next())
                .map(|(id, _)| *id);
            id.and_then(|id| http.remove(&id))
        };
        let Some(victim) = victim else {
            return false;
        };
        metrics::http_connections(-1.0);
        metrics::connection_shed(reason.as_str());
        victim.shed.notify_one();
        true
    }

    /// Whether `conn` has outlived its header or keep-alive time, and if not, when to look again.
    fn verdict(&self, conn: &Conn) -> Verdict {
        let now = self.now_ms();
        let header = millis(self.limits.header_read_timeout);
        let keep_alive = millis(self.limits.keep_alive_timeout);
        // A request in progress: its body has its own timeout, and its handler runs as long as
        // it needs. Look again later.
        if conn.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::WaitUntil(self.instant(now.saturating_add(keep_alive)));
        }
        let head_started = conn.head_started.load(Ordering::Relaxed);
        let (due, phase) = if head_started != NO_HEAD {
            (head_started.saturating_add(header), Phase::Header)
        } else if conn.served_one.load(Ordering::Relaxed) {
            let idle = conn.idle_since.load(Ordering::Relaxed);
            (idle.saturating_add(keep_alive), Phase::Idle)
        } else {
            let idle = conn.idle_since.load(Ordering::Relaxed);
            (idle.saturating_add(header), Phase::Header)
        };
        if now >= due {
            Verdict::Close(phase)
        } else {
            Verdict::WaitUntil(self.instant(due))
        }
    }

    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Holds one place in the open-connection count for as long as the socket lives, upgraded or
/// not.
struct OpenSlot(Arc<Registry>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        metrics::tcp_connection_closed();
    }
}

/// The socket, noting when the first byte of a request arrives while the connection speaks
/// HTTP; once upgraded it only passes bytes through.
struct GuardedIo {
    stream: TcpStream,
    conn: Option<Arc<Conn>>,
    _open: OpenSlot,
}

impl GuardedIo {
    /// Once upgraded (noticed on the first read or write after it), the connection keeps only
    /// its place in the open count, not the HTTP bookkeeping, for the life of the WebSocket.
    fn drop_if_detached(&mut self) {
        if self
            .conn
            .as_ref()
            .is_some_and(|conn| conn.detached.load(Ordering::Relaxed))
        {
            self.conn = None;
        }
    }

    fn note_bytes(&mut self) {
        self.drop_if_detached();
        let Some(conn) = &self.conn else {
            return;
        };
        if conn.in_flight.load(Ordering::Relaxed) == 0
            && conn.head_started.load(Ordering::Relaxed) == NO_HEAD
        {
            conn.head_started
                .store(self._open.0.now_ms(), Ordering::Relaxed);
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.note_bytes();
        }
        polled
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.drop_if_detached();
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.drop_if_detached();
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// An upgraded WebSocket's TCP stream, taken back from hyper ([`take_stream`]): the stream and
/// its place in the open-connection count, without hyper's box and read-ahead buffer around it
/// or the HTTP bookkeeping (every idle WebSocket holds this; see `session::upgrade`).
pub struct UpgradedStream {
    stream: TcpStream,
    _open: OpenSlot,
}

/// The TCP stream of a connection hyper upgraded, with the bytes hyper had read past the
/// request (usually none: a client waits for the 101 before it sends frames); the `Upgraded`
/// back if the connection did not come through [`serve`].
pub(crate) fn take_stream(
    upgraded: hyper::upgrade::Upgraded,
) -> Result<(UpgradedStream, bytes::Bytes), hyper::upgrade::Upgraded> {
    let parts = upgraded.downcast::<TokioIo<GuardedIo>>()?;
    let GuardedIo { stream, _open, .. } = parts.io.into_inner();
    Ok((UpgradedStream { stream, _open }, parts.read_buf))
}

impl AsyncRead for UpgradedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpgradedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One request from its head until its response is written out; the connection is idle again
/// when the last one ends.
struct InFlight {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl InFlight {
    fn start(conn: Arc<Conn>, registry: Arc<Registry>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { conn, registry }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.conn;
        conn.idle_since
            .store(self.registry.now_ms(), Ordering::Relaxed);
        conn.head_started.store(NO_HEAD, Ordering::Relaxed);
        conn.served_one.store(true, Ordering::Relaxed);
        conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that ends its request's [`InFlight`] when hyper is done with it.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = <Body as hyper::body::Body>::Data;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err`, from reading a request body, is the body-read timeout.
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests;
