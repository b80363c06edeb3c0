//! The WebSocket handshake's last step, done here rather than by axum's
//! `WebSocketUpgrade::on_upgrade`, so that the session owns the smallest socket that works.
//!
//! axum's `WebSocket` is tokio-tungstenite's stream over hyper's `Upgraded` plus the chosen
//! subprotocol (`Option<HeaderValue>`, 40 bytes Confab never sets), and `Upgraded` keeps the
//! TCP stream in a box behind a read-ahead buffer (48 bytes in the session, 64 on the heap).
//! Every idle connection's task holds the socket, so here the session gets its own WebSocket
//! ([`WebSocket`]: tungstenite's protocol state) over the TCP stream itself, taken back from
//! hyper ([`Io`]). The request is still
//! checked by axum's `WebSocketUpgrade` (its checks and its rejections are unchanged);
//! [`Handshake`] takes a clone of hyper's upgrade handle and the key beside it.

use std::convert::Infallible;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::WebSocketConfig;

use crate::accept::UpgradedStream;
use crate::error::AppError;

/// The server's WebSocket: its own, over [`Io`] (see `session/socket.rs`).
pub type WebSocket = super::socket::WebSocket<Io>;

/// What the handshake's answer and the upgrade need from the request. Extracted before axum's
/// `WebSocketUpgrade`, which takes hyper's upgrade handle out of the request (this keeps a clone
/// of it; either resolves the upgrade).
pub struct Handshake {
    on_upgrade: Option<OnUpgrade>,
    key: Option<HeaderValue>,
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Handshake {
            on_upgrade: parts.extensions.get::<OnUpgrade>().cloned(),
            key: parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned(),
        })
    }
}

impl Handshake {
    /// Answers 101 and, once hyper hands the connection over, runs `session` on it in a task of
    /// its own, as axum's `on_upgrade` does (a failed upgrade is dropped silently, as there).
    /// Called only for a request axum's `WebSocketUpgrade` accepted: an HTTP/1.1 `GET` with the
    /// upgrade headers and a key.
    pub fn answer<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (Some(on_upgrade), Some(key)) = (self.on_upgrade, self.key) else {
            return AppError::invalid("this endpoint takes a WebSocket upgrade").into_response();
        };
        let Ok(accept) = HeaderValue::try_from(derive_accept_key(key.as_bytes())) else {
            return AppError::internal("cannot answer the WebSocket handshake").into_response();
        };
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let (io, read) = Io::of(upgraded);
            session(WebSocket::new(io, read, config)).await;
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}

/// An upgraded connection's byte stream: the TCP stream itself, as the accept loop hands it over
/// (32 bytes and the open-connection count). A connection that came another way keeps hyper's
/// `Upgraded`, boxed, so that the rare case costs the common one nothing.
pub enum Io {
    Tcp(UpgradedStream),
    Hyper(Box<TokioIo<Upgraded>>),
}

impl Io {
    /// The byte stream of an upgraded connection, and the bytes hyper read past the request
    /// (a client that sent frames before the 101; usually none), which tungstenite reads first.
    fn of(upgraded: Upgraded) -> (Io, Vec<u8>) {
        match crate::accept::take_stream(upgraded) {
            Ok((stream, read)) => (Io::Tcp(stream), read.to_vec()),
            Err(upgraded) => (Io::Hyper(Box::new(TokioIo::new(upgraded))), Vec::new()),
        }
    }

    /// The stream to write to.
    fn writer(self: Pin<&mut Self>) -> Pin<&mut (dyn AsyncWrite + Send + Unpin)> {
        match self.get_mut() {
            Io::Tcp(stream) => Pin::new(stream),
            Io::Hyper(upgraded) => Pin::new(upgraded.as_mut()),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Hyper(upgraded) => Pin::new(upgraded.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.writer().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.writer().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(stream) => stream.is_write_vectored(),
            Io::Hyper(upgraded) => upgraded.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.writer().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.writer().poll_shutdown(cx)
    }
}
