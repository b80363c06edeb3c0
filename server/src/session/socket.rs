//! The server's WebSocket: tungstenite's protocol state ([`WebSocketContext`]) driven over the
//! upgraded connection's byte stream ([`Io`]) by the one task that owns both, with a write
//! buffer of its own that an idle connection does not keep.
//!
//! tokio-tungstenite's `WebSocketStream` drives the same context for any number of tasks: its
//! byte stream keeps two reference-counted waker proxies (a read and a write one, 64 B each on
//! the heap and 16 B in the socket), so that a read that must write (a pong, a close's answer)
//! wakes the reading task when the socket drains, even when another task writes. A session
//! reads and writes from its one task (the loop's `select!` polls both), so the waker of each
//! poll is the one to wake for both directions, and every connection keeps neither proxy.
//!
//! tungstenite's frame buffer keeps the capacity of the largest burst it ever wrote (a
//! `welcome` and a `joined` frame: 221 B per idle connection in the `idle` bench; a burst of 64
//! deliveries: kilobytes, for good). Here the session's frames (text, binary, ping and pong)
//! are framed by tungstenite's `Frame` into a buffer of the socket's own, which is freed once
//! everything in it is written. tungstenite still writes what its protocol state decides (the
//! close, its answer to a client's ping or close): its writes go into the same buffer, in
//! order, so no frame of one ever splits one of the other; with its own threshold at zero, its
//! buffer never holds more than one such frame.
//!
//! tungstenite reads at most its read buffer's size at a time (256 B here, so that an idle
//! connection keeps little): a client that streams frames (a bot importing history, a
//! pipelining load generator) cost one `recv` per 256 bytes, about one per message. Once a read
//! fills that buffer, the socket reads ahead instead: up to [`READ_AHEAD`] bytes at a time
//! into a buffer of its own, handed to tungstenite from there, and given back as soon as the
//! client has nothing more to read. A client that sends one small frame at a time never fills
//! the 256 bytes and keeps no such buffer.
//!
//! The `Stream` and `Sink` behave as tokio-tungstenite's: the stream ends after a close or an
//! error; `poll_ready` flushes once the buffer holds [`FLUSH_AT`] bytes; `poll_flush` writes
//! everything.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error, Message};

/// Bytes of frames the socket takes before `poll_ready` waits for them to be written. Past it,
/// tungstenite's own writes (its answers to a client's pings) wait in its state instead
/// (a client that pings and does not read cannot grow the buffer).
pub const FLUSH_AT: usize = 8 * 1024;

/// Bytes read at a time while a client streams frames (see the module's documentation).
pub const READ_AHEAD: usize = 4 * 1024;

/// The socket's buffers, on the heap only while one of them is in use.
#[derive(Default)]
struct Buffers {
    /// Frames waiting for the socket.
    write: Vec<u8>,
    /// Bytes read ahead of tungstenite: `ahead[at..end]` is not handed over yet. [`READ_AHEAD`]
    /// long while reading ahead, empty otherwise.
    ahead: Vec<u8>,
    at: usize,
    end: usize,
}

/// The socket's buffers: `None` when nothing waits to be written and nothing is read ahead, so
/// that an idle connection keeps none (8 bytes in the socket, which every idle connection's
/// task holds).
type Out = Option<Box<Buffers>>;

/// A WebSocket over a byte stream (the server's is [`super::upgrade::Io`]), polled by one task
/// (see the module's documentation).
pub struct WebSocket<S> {
    io: S,
    context: WebSocketContext,
    out: Out,
    /// The stream gave its last item (a close or an error): it is fused.
    ended: bool,
    /// The last read filled tungstenite's buffer: read ahead ([`READ_AHEAD`]).
    reading_ahead: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// A server's WebSocket over `io`, with `read` the bytes already read past the handshake
    /// (usually none). The config's write buffer size is not used: see [`FLUSH_AT`].
    pub fn new(io: S, read: Vec<u8>, config: WebSocketConfig) -> WebSocket<S> {
        // tungstenite hands each frame it writes to the socket's buffer at once.
        let config = config.write_buffer_size(0);
        let context = if read.is_empty() {
            WebSocketContext::new(Role::Server, Some(config))
        } else {
            WebSocketContext::from_partially_read(read, Role::Server, Some(config))
        };
        WebSocket {
            io,
            context,
            out: None,
            ended: false,
            reading_ahead: false,
        }
    }

    /// Writes the buffer to the socket; `Ready(Ok)` once all of it is written (and the buffer
    /// freed), `Pending` with the waker registered while the socket is full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(out) = self.out.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while !out.write.is_empty() {
            match std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &out.write)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => {
                    out.write.drain(..written);
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        if out.ahead.is_empty() {
            self.out = None;
        }
        Poll::Ready(Ok(()))
    }

    /// Runs `f` on tungstenite's context and a blocking view of the byte stream, after
    /// writing what the buffer holds as far as the socket takes it (so that a `WouldBlock`
    /// from a full buffer comes with the waker registered for the socket's room).
    fn with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocketContext, &mut Blocking<'_, '_, S>) -> R,
    ) -> Result<R, Error> {
        if let Poll::Ready(Err(err)) = self.poll_write_out(cx) {
            return Err(Error::Io(err));
        }
        let mut stream = Blocking {
            io: &mut self.io,
            out: &mut self.out,
            reading_ahead: &mut self.reading_ahead,
            cx,
        };
        Ok(f(&mut self.context, &mut stream))
    }

    /// Frames a message of the session's into the buffer (all but the close, whose state
    /// tungstenite keeps).
    fn buffer(&mut self, frame: Frame) -> Result<(), Error> {
        if !self.context.can_write() {
            return Err(Error::Protocol(
                tungstenite::error::ProtocolError::SendAfterClosing,
            ));
        }
        let out = &mut self.out.get_or_insert_default().write;
        out.reserve(frame.len());
        frame.format(out)
    }
}

/// The byte stream as `Read` and `Write` for tungstenite: a read that is pending is a
/// `WouldBlock`, with the waker registered; a write goes into the socket's buffer, whole, or
/// is a `WouldBlock` while the buffer is full.
struct Blocking<'a, 'b, S> {
    io: &'a mut S,
    out: &'a mut Out,
    reading_ahead: &'a mut bool,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncRead + Unpin> Blocking<'_, '_, S> {
    fn poll_read_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(err)) => Err(err),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Reads up to [`READ_AHEAD`] bytes into the socket's buffer. Nothing to read (or the end
    /// of the stream, or an error) ends the reading ahead and gives the buffer back.
    fn read_ahead(&mut self) -> io::Result<()> {
        let mut out = self.out.take().unwrap_or_default();
        if out.ahead.is_empty() {
            out.ahead = vec![0; READ_AHEAD];
        }
        let read = self.poll_read_into(&mut out.ahead);
        match read {
            Ok(read) if read > 0 => (out.at, out.end) = (0, read),
            _ => {
                *self.reading_ahead = false;
                (out.ahead, out.at, out.end) = (Vec::new(), 0, 0);
            }
        }
        if !out.ahead.is_empty() || !out.write.is_empty() {
            *self.out = Some(out);
        }
        read.map(|_| ())
    }
}

impl<S: AsyncRead + Unpin> Read for Blocking<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !*self.reading_ahead {
            let read = self.poll_read_into(buf)?;
            // A read that fills tungstenite's buffer most likely left more behind.
            *self.reading_ahead = read > 0 && read == buf.len();
            return Ok(read);
        }
        if self.out.as_ref().is_none_or(|out| out.at == out.end) {
            self.read_ahead()?;
        }
        let Some(out) = self.out.as_mut().filter(|out| out.at < out.end) else {
            return Ok(0); // The end of the stream.
        };
        let read = buf.len().min(out.end - out.at);
        buf[..read].copy_from_slice(&out.ahead[out.at..out.at + read]);
        out.at += read;
        Ok(read)
    }
}

impl<S> Write for Blocking<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = &mut self.out.get_or_insert_default().write;
        if out.len() >= FLUSH_AT {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A tungstenite result as a poll: `WouldBlock` is pending (the waker is registered).
fn poll<T>(result: Result<T, Error>) -> Poll<Result<T, Error>> {
    match result {
        Err(Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let read = self
            .with(cx, |context, stream| context.read(stream))
            .and_then(|read| read);
        // What the read wrote (an answer to a ping or a close) goes out now, as far as the
        // socket takes it, and the rest with the next write or read; a failed write shows
        // there. At the end of the stream the close's answer is written if the socket takes
        // it at once (as tungstenite wrote it): the socket is dropped next.
        if let Poll::Ready(Err(err)) = self.poll_write_out(cx) {
            tracing::debug!(error = %err, "websocket write failed");
        }
        match std::task::ready!(poll(read)) {
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

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self
            .out
            .as_ref()
            .is_some_and(|out| out.write.len() >= FLUSH_AT)
        {
            std::task::ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        let frame = match message {
            Message::Text(text) => Frame::message(text, OpCode::Data(Data::Text), true),
            Message::Binary(bytes) => Frame::message(bytes, OpCode::Data(Data::Binary), true),
            Message::Ping(bytes) => Frame::ping(bytes),
            Message::Pong(bytes) => Frame::pong(bytes),
            Message::Close(close) => {
                // tungstenite keeps the close handshake's state, and buffers the frame (its
                // write into a full buffer waits in that state; `poll_flush` writes it).
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let Self {
                    io,
                    context,
                    out,
                    reading_ahead,
                    ..
                } = &mut *self;
                let mut stream = Blocking {
                    io,
                    out,
                    reading_ahead,
                    cx: &mut cx,
                };
                return match context.close(&mut stream, close) {
                    Err(Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    other => other,
                };
            }
            Message::Frame(frame) => frame,
        };
        self.buffer(frame)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // tungstenite's frame waiting for room, if any, joins the buffer, then all of it goes.
        let flushed = self.with(cx, |context, stream| context.flush(stream))?;
        let flushed = match std::task::ready!(poll(flushed)) {
            // The connection closed as the flush finished the close handshake.
            Err(Error::ConnectionClosed) | Ok(()) => Ok(()),
            Err(err) => Err(err),
        };
        std::task::ready!(self.poll_write_out(cx))?;
        Poll::Ready(flushed)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let closed = self.with(cx, |context, stream| context.close(stream, None))?;
        let closed = match std::task::ready!(poll(closed)) {
            Err(Error::ConnectionClosed) | Ok(()) => Ok(()),
            Err(err) => Err(err),
        };
        std::task::ready!(self.poll_write_out(cx))?;
        Poll::Ready(closed)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio_tungstenite::WebSocketStream;
    use tungstenite::protocol::CloseFrame;
    use tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    /// A server socket and a client (tokio-tungstenite) over an in-memory pipe of `room`
    /// bytes each way: a small pipe stands for a socket the client is slow to read.
    async fn pair(room: usize) -> (WebSocket<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(room);
        let server = WebSocket::new(server, Vec::new(), WebSocketConfig::default());
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (server, client)
    }

    /// A byte stream that counts the reads that brought bytes.
    struct Counted {
        inner: DuplexStream,
        reads: usize,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
            if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                self.reads += 1;
            }
            polled
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A server socket with the sessions' read buffer (256 B) that counts its reads.
    async fn counted_pair(room: usize) -> (WebSocket<Counted>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(room);
        let server = Counted {
            inner: server,
            reads: 0,
        };
        let config = WebSocketConfig::default().read_buffer_size(256);
        let server = WebSocket::new(server, Vec::new(), config);
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (server, client)
    }

    /// Whether the server's stream has nothing to give now.
    fn nothing_now<S: AsyncRead + AsyncWrite + Unpin>(server: &mut WebSocket<S>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(server).poll_next(&mut cx).is_pending()
    }

    fn texts(count: usize) -> Vec<String> {
        // Sizes from a few bytes to past `FLUSH_AT`, so bursts cross the flush threshold.
        (0..count)
            .map(|i| format!("{i}:{}", "x".repeat((i * 397) % (FLUSH_AT + 3000))))
            .collect()
    }

    /// Every frame arrives whole and in order through a pipe far smaller than the burst, while
    /// the client pings (each ping answered, no answer splitting a frame), and once everything
    /// is written the socket keeps no write buffer.
    #[tokio::test]
    async fn frames_go_out_whole_and_in_order_and_the_buffer_is_freed() {
        let (mut server, client) = pair(512).await;
        let sent = texts(120);
        let expected = sent.clone();
        let (mut to_server, mut from_server) = client.split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut pongs = 0;
            while got.len() < expected.len() || pongs < 20 {
                match from_server.next().await {
                    Some(Ok(Message::Text(text))) => got.push(text.to_string()),
                    Some(Ok(Message::Pong(_))) => pongs += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (got, pongs)
        });
        for i in 0..20u8 {
            to_server
                .send(Message::Ping(vec![i].into()))
                .await
                .expect("ping");
        }
        // The server reads the pings (answering each) while it writes its burst.
        let pings = async {
            let mut pings = 0;
            while pings < 20 {
                match server.next().await {
                    Some(Ok(Message::Ping(_))) => pings += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
        };
        pings.await;
        for text in &sent {
            server
                .feed(Message::text(text.as_str()))
                .await
                .expect("feed");
        }
        // The flush writes the frames and tungstenite's answer to the last ping, which waited
        // in its state for the next read or flush.
        server.flush().await.expect("flush");
        let (got, pongs) = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("the client got everything")
            .expect("reader");
        assert_eq!(got, sent);
        assert_eq!(pongs, 20);
        assert!(server.out.is_none(), "the written buffer is freed");
    }

    /// Frames a client streams are read ahead, many to a read rather than one read per 256
    /// bytes, arrive whole and in order (small ones, and ones larger than the read-ahead), and
    /// the buffer is given back once the client has nothing more to read.
    #[tokio::test]
    async fn a_streaming_client_is_read_ahead_and_the_buffer_given_back() {
        let (mut server, mut client) = counted_pair(1 << 20).await;
        let sent: Vec<String> = (0..300)
            .map(|i| format!("{i}:{}", "m".repeat((i * 211) % 700 + 40)))
            .chain(std::iter::once("z".repeat(3 * READ_AHEAD + 17)))
            .collect();
        for text in &sent {
            client
                .feed(Message::text(text.as_str()))
                .await
                .expect("feed");
        }
        client.flush().await.expect("flush");
        let bytes: usize = sent.iter().map(|text| text.len() + 8).sum();
        for text in &sent {
            match server.next().await {
                Some(Ok(Message::Text(got))) => assert_eq!(got.as_str(), text),
                other => panic!("unexpected {other:?}"),
            }
        }
        let reads = server.io.reads;
        assert!(
            reads <= bytes / READ_AHEAD + 4,
            "{reads} reads for {bytes} bytes"
        );
        assert!(nothing_now(&mut server), "everything was read");
        assert!(!server.reading_ahead);
        assert!(server.out.is_none(), "the read-ahead buffer is given back");
        // A frame at a time afterwards: read straight into tungstenite's buffer.
        for i in 0..5 {
            client
                .send(Message::text(format!("one {i}")))
                .await
                .expect("send");
            match server.next().await {
                Some(Ok(Message::Text(got))) => assert_eq!(got.as_str(), format!("one {i}")),
                other => panic!("unexpected {other:?}"),
            }
            assert!(nothing_now(&mut server));
            assert!(!server.reading_ahead && server.out.is_none());
        }
        assert_eq!(server.io.reads, reads + 5);
    }

    /// A client that streams frames and then closes: the frames, then the close, then the end.
    #[tokio::test]
    async fn a_close_after_streamed_frames_is_read() {
        let (mut server, mut client) = counted_pair(1 << 16).await;
        for i in 0..100 {
            client
                .feed(Message::text(format!("{i}:{}", "q".repeat(300))))
                .await
                .expect("feed");
        }
        client.close(None).await.expect("close");
        for i in 0..100 {
            match server.next().await {
                Some(Ok(Message::Text(got))) => assert!(got.starts_with(&format!("{i}:"))),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(matches!(server.next().await, Some(Ok(Message::Close(_)))));
        assert!(server.next().await.is_none(), "the stream ends");
    }

    /// A client that pings and does not read: the answers wait in tungstenite's state (one at
    /// a time, the newest) rather than growing the buffer.
    #[tokio::test]
    async fn pings_of_a_client_that_does_not_read_do_not_grow_the_buffer() {
        let (mut server, client) = pair(64).await;
        let (mut to_server, _from_server) = client.split();
        // Past `FLUSH_AT` in the buffer: the pipe takes 64 bytes of it.
        for _ in 0..3 {
            server
                .start_send_unpin(Message::text("y".repeat(4000)))
                .expect("send");
        }
        let pinger = tokio::spawn(async move {
            for i in 0..1000u32 {
                let ping = Message::Ping(i.to_be_bytes().to_vec().into());
                to_server.send(ping).await.expect("ping");
            }
            to_server
        });
        let read = async {
            for _ in 0..1000 {
                match server.next().await {
                    Some(Ok(Message::Ping(_))) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("the pings are read");
        let _to_server = pinger.await.expect("pinger");
        let queued = server.out.as_ref().map_or(0, |out| out.write.len());
        assert!(queued <= 3 * 4004, "{queued} bytes queued");
    }

    /// A close the server sends goes out after the frames fed before it; the client's answer
    /// ends the server's stream.
    #[tokio::test]
    async fn the_close_follows_the_frames_before_it() {
        let (mut server, mut client) = pair(256).await;
        let sent = texts(30);
        let expected = sent.clone();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match client.next().await {
                    Some(Ok(Message::Text(text))) => got.push(text.to_string()),
                    Some(Ok(Message::Close(close))) => {
                        // tokio-tungstenite answers the close as it reads on.
                        while client.next().await.is_some() {}
                        return (got, close);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        for text in &sent {
            server
                .feed(Message::text(text.as_str()))
                .await
                .expect("feed");
        }
        let close = CloseFrame {
            code: CloseCode::Policy,
            reason: "bye".into(),
        };
        server
            .send(Message::Close(Some(close)))
            .await
            .expect("close");
        // No frame after the close.
        assert!(server.send(Message::text("late")).await.is_err());
        // The client's answer ends the stream.
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Some(item) = server.next().await {
                item.expect("no error before the end");
            }
        });
        end.await.expect("the stream ends");
        // The session drops its socket at the end of the stream: the client sees it close.
        drop(server);
        let (got, close) = reader.await.expect("reader");
        assert_eq!(got, expected);
        let close = close.expect("a close frame");
        assert_eq!(close.code, CloseCode::Policy);
        assert_eq!(close.reason.as_str(), "bye");
    }

    /// A client's close is answered, and ends the server's stream after the close message.
    #[tokio::test]
    async fn a_client_close_is_answered() {
        let (mut server, mut client) = pair(1024).await;
        client.close(None).await.expect("client close");
        match server.next().await {
            Some(Ok(Message::Close(_))) => {}
            other => panic!("expected the close, got {other:?}"),
        }
        assert!(
            server.next().await.is_none(),
            "the stream ends after the close"
        );
        drop(server);
        // The client reads the server's answer, then its stream ends.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), client.next()).await;
        assert!(
            matches!(answer, Ok(Some(Ok(Message::Close(_))))),
            "{answer:?}"
        );
        let end = tokio::time::timeout(std::time::Duration::from_secs(5), client.next()).await;
        assert!(matches!(end, Ok(None)), "{end:?}");
    }
}
