//! The server's WebSocket: tungstenite's protocol state ([`WebSocketContext`]) driven over the
//! upgraded connection's byte stream ([`Io`]) by the one task that owns both.
//!
//! tokio-tungstenite's `WebSocketStream` does the same for any number of tasks: its byte
//! stream keeps two reference-counted waker proxies (a read and a write one, 64 B each on the
//! heap and 16 B in the socket), so that a read that must write (a pong, a close's answer) wakes
//! the reading task when the socket drains, even when another task writes. A session reads and
//! writes from its one task (the loop's `select!` polls both), so the waker of each poll is the
//! one to wake for both directions, and every idle connection keeps neither proxy. The `Stream`
//! and `Sink` behave as tokio-tungstenite's do: the stream ends after a close or an error; a
//! frame written into a full socket is queued and `poll_ready` flushes it.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error, Message};

use super::upgrade::Io;

/// A WebSocket over [`Io`], polled by one task (see the module's documentation).
pub struct WebSocket {
    io: Io,
    context: WebSocketContext,
    /// The stream gave its last item (a close or an error): it is fused.
    ended: bool,
    /// No frame waits in tungstenite's buffer for a socket that was full.
    ready: bool,
    /// The close frame is queued; `poll_close` flushes it.
    closing: bool,
}

impl WebSocket {
    /// A server's WebSocket over `io`, with `read` the bytes already read past the handshake
    /// (usually none).
    pub fn new(io: Io, read: Vec<u8>, config: WebSocketConfig) -> WebSocket {
        let context = if read.is_empty() {
            WebSocketContext::new(Role::Server, Some(config))
        } else {
            WebSocketContext::from_partially_read(read, Role::Server, Some(config))
        };
        WebSocket {
            io,
            context,
            ended: false,
            ready: true,
            closing: false,
        }
    }

    /// Runs `f` on tungstenite's context and a blocking view of the byte stream whose
    /// `WouldBlock` registers `cx`'s waker for the direction that blocked.
    fn with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocketContext, &mut Blocking<'_, '_>) -> R,
    ) -> R {
        let mut stream = Blocking {
            io: &mut self.io,
            cx,
        };
        f(&mut self.context, &mut stream)
    }
}

/// The byte stream as `Read` and `Write` for tungstenite: a poll that is pending is a
/// `WouldBlock`, with the waker registered.
struct Blocking<'a, 'b> {
    io: &'a mut Io,
    cx: &'a mut Context<'b>,
}

impl Read for Blocking<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(err)) => Err(err),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Blocking<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// A tungstenite result as a poll: `WouldBlock` is pending (the waker is registered).
fn poll<T>(result: Result<T, Error>) -> Poll<Result<T, Error>> {
    match result {
        Err(Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(poll(self.with(cx, |context, stream| context.read(stream)))) {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(err) => {
                self.ended = true;
                if matches!(err, Error::AlreadyClosed | Error::ConnectionClosed) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(err)))
                }
            }
        }
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        // A frame waits for a full socket: flush it away first.
        let flushed =
            std::task::ready!(poll(self.with(cx, |context, stream| context.flush(stream))));
        self.ready = true;
        Poll::Ready(flushed)
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        // `start_send` has no waker: tungstenite writes here only when its buffer passed the
        // configured size, and a socket that is full then leaves `ready` false, so that the
        // next `poll_ready` (or `poll_flush`) flushes with the task's waker.
        let mut cx = Context::from_waker(Waker::noop());
        match self.with(&mut cx, |context, stream| context.write(stream, message)) {
            Ok(()) => {
                self.ready = true;
                Ok(())
            }
            Err(Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                // Queued, not written: `poll_ready` flushes it.
                self.ready = false;
                Ok(())
            }
            Err(err) => {
                self.ready = true;
                Err(err)
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let flushed =
            std::task::ready!(poll(self.with(cx, |context, stream| context.flush(stream))));
        self.ready = true;
        match flushed {
            // The connection closed as the flush finished the close handshake.
            Err(Error::ConnectionClosed) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.ready = true;
        let closing = self.closing;
        let result = self.with(cx, |context, stream| {
            if closing {
                context.flush(stream)
            } else {
                context.close(stream, None)
            }
        });
        match result {
            Ok(()) | Err(Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                self.closing = true;
                Poll::Pending
            }
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}
