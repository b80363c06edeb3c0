//! Frames a client must not send close the connection with the RFC 6455 status code in a close
//! frame (1002 protocol error, 1007 invalid payload data, 1009 message too big), not with a bare
//! TCP close. Each case speaks a hand-made handshake over raw TCP, since a WebSocket client
//! library refuses to send such frames.

mod common;

use std::time::Duration;

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// Opens a WebSocket over raw TCP (with a bearer token, or none for first-frame auth) and
/// reads the `101` answer.
async fn connect(server: &Server, token: Option<&str>) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, tcp.read_u8())
            .await
            .expect("handshake answer in time")
            .expect("handshake answer");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// A client frame: first byte (FIN, RSV, opcode) as given, masked unless `masked` is false.
fn frame(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=65535 => {
            out.push(mask_bit | 126);
            out.extend((len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend((len as u64).to_be_bytes());
        }
    }
    if !masked {
        out.extend(payload);
        return out;
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    out.extend(key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Reads server frames until a close frame and returns its status code; panics if the
/// connection ends without one.
async fn close_code(tcp: &mut TcpStream) -> u16 {
    for _ in 0..100 {
        let read = async {
            let first = tcp.read_u8().await?;
            let len = match tcp.read_u8().await? & 0x7f {
                126 => u64::from(tcp.read_u16().await?),
                127 => tcp.read_u64().await?,
                len => u64::from(len),
            };
            let mut payload = vec![0; usize::try_from(len).expect("length")];
            tcp.read_exact(&mut payload).await?;
            std::io::Result::Ok((first & 0x0f, payload))
        };
        let (opcode, payload) = tokio::time::timeout(WAIT, read)
            .await
            .expect("a frame or the close in time")
            .unwrap_or_else(|err| panic!("connection ended without a close frame: {err}"));
        if opcode == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
    panic!("no close frame among 100 frames");
}

#[tokio::test]
async fn protocol_violations_close_with_their_rfc_6455_code() {
    let server =
        Server::in_process(&["--max-frame-bytes", "1024", "--max-body-bytes", "1024"]).await;
    let token = common::token("alice");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "text that is not utf-8",
            frame(0x81, true, &[0x7b, 0xff, 0xfe, 0x7d]),
            1007,
        ),
        ("an unmasked client frame", frame(0x81, false, b"{}"), 1002),
        ("reserved bit rsv1 set", frame(0xc1, true, b"{}"), 1002),
        ("reserved data opcode 0x3", frame(0x83, true, b"{}"), 1002),
        ("reserved control opcode 0xb", frame(0x8b, true, b""), 1002),
        ("a ping of 126 bytes", frame(0x89, true, &[0; 126]), 1002),
        ("a fragmented ping", frame(0x09, true, b"hi"), 1002),
        (
            "a continuation with nothing to continue",
            frame(0x80, true, b"x"),
            1002,
        ),
        // Over four times max_frame_bytes.
        (
            "a message over the hard cap",
            frame(0x81, true, &[b' '; 5000]),
            1009,
        ),
    ];
    for (name, bytes, expected) in &cases {
        let mut tcp = connect(&server, Some(&token)).await;
        tcp.write_all(bytes).await.expect("send the bad frame");
        let code = close_code(&mut tcp).await;
        assert_eq!(code, *expected, "{name}");
    }
}

#[tokio::test]
async fn a_violation_before_the_auth_frame_closes_with_its_code_too() {
    let server = Server::in_process(&[]).await;
    let mut tcp = connect(&server, None).await;
    tcp.write_all(&frame(0x81, true, &[0xc3, 0x28]))
        .await
        .expect("send");
    assert_eq!(close_code(&mut tcp).await, 1007);
    let mut tcp = connect(&server, None).await;
    tcp.write_all(&frame(0x81, false, b"{}"))
        .await
        .expect("send");
    assert_eq!(close_code(&mut tcp).await, 1002);
}

/// Reads one unfragmented server text frame and returns its text.
async fn text_frame(tcp: &mut TcpStream) -> String {
    let read = async {
        let first = tcp.read_u8().await?;
        let len = match tcp.read_u8().await? & 0x7f {
            126 => u64::from(tcp.read_u16().await?),
            127 => tcp.read_u64().await?,
            len => u64::from(len),
        };
        let mut payload = vec![0; usize::try_from(len).expect("length")];
        tcp.read_exact(&mut payload).await?;
        std::io::Result::Ok((first, payload))
    };
    let (first, payload) = tokio::time::timeout(WAIT, read)
        .await
        .expect("a frame in time")
        .expect("a frame");
    assert_eq!(first, 0x81, "a final text frame");
    String::from_utf8(payload).expect("utf-8")
}

/// The handshake's answer is RFC 6455's (the accept key of the RFC's sample key, the upgrade
/// headers), and frames a client sends in the same write as its request, before the `101`
/// (which the server's HTTP parser has read along with the request), are the first frames
/// the session reads: with a bearer token and with first-frame auth.
#[tokio::test]
async fn frames_sent_with_the_handshake_are_read_first() {
    let server = Server::in_process(&[]).await;
    let token = common::token("alice");
    for (header, frames) in [
        (
            format!("Authorization: Bearer {token}\r\n"),
            frame(
                0x81,
                true,
                br#"{"type":"join","conversation":"nope","ref":"r1"}"#,
            ),
        ),
        (
            String::new(),
            frame(
                0x81,
                true,
                format!(r#"{{"type":"auth","token":"{token}"}}"#).as_bytes(),
            ),
        ),
    ] {
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .expect("connect");
        let mut request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{header}\r\n"
        )
        .into_bytes();
        request.extend(&frames);
        tcp.write_all(&request).await.expect("handshake and frame");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(WAIT, tcp.read_u8())
                .await
                .expect("handshake answer in time")
                .expect("handshake answer");
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
            "{head}"
        );
        assert!(head.contains("upgrade: websocket\r\n"), "{head}");
        let welcome = text_frame(&mut tcp).await;
        assert!(welcome.contains(r#""type":"welcome""#), "{welcome}");
        if header.is_empty() {
            continue;
        }
        // The join sent with the request is answered after the welcome.
        let answer = text_frame(&mut tcp).await;
        assert!(answer.contains(r#""type":"error""#), "{answer}");
        assert!(answer.contains(r#""ref":"r1""#), "{answer}");
    }
}
