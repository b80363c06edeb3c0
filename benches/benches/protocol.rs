//! Protocol encode/decode per frame kind.

use confab_protocol::frames::MessageEvent;
use confab_protocol::{ClientFrame, ServerFrame};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn decode_send(c: &mut Criterion) {
    let text = r#"{"type":"send","ref":"r1","conversation":"0192f3a1b2c3d4e5f60718293a4b5c6d","client_msg_id":"7f1c","body":"hello there, how are you doing today?"}"#;
    c.bench_function("decode send", |b| {
        b.iter(|| serde_json::from_str::<ClientFrame>(black_box(text)))
    });
}

fn encode_message(c: &mut Criterion) {
    let frame = ServerFrame::Message(MessageEvent {
        conversation: "0192f3a1b2c3d4e5f60718293a4b5c6d".into(),
        id: "0192f3a1b2c3d4e5f60718293a4b5c6e".into(),
        seq: 123_456,
        author: "alice".into(),
        body: "hello there, how are you doing today?".into(),
        ts: 1_764_000_000_000,
        client_msg_id: "7f1c".into(),
        reply_to: None,
        attachments: vec![],
    });
    c.bench_function("encode message", |b| {
        b.iter(|| serde_json::to_vec(black_box(&frame)))
    });
}

criterion_group!(benches, decode_send, encode_message);
criterion_main!(benches);
