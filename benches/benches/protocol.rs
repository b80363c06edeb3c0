//! Protocol encode/decode per frame kind: every client command (decoded by the server, encoded
//! by clients) and every server frame (encoded once by the server, decoded by clients).

use confab_protocol::frames::{Limits, MessageEvent};
use confab_protocol::rest::{Attachment, Role};
use confab_protocol::{ClientFrame, Command, ErrorCode, ServerFrame};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const CONVERSATION: &str = "0192f3a1b2c3d4e5f60718293a4b5c6d";
const MESSAGE: &str = "0192f3a1b2c3d4e5f60718293a4b5c6e";
const BODY: &str = "hello there, how are you doing today?";
const TS: i64 = 1_764_000_000_000;

fn client_frames() -> Vec<(&'static str, ClientFrame)> {
    let frame = |r: &str, command| ClientFrame::with_ref(r, command);
    vec![
        ("auth", frame("a1", Command::Auth { token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsInRpZCI6ImFjbWUiLCJleHAiOjE3NjQwMDAwMDB9.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl".into() })),
        ("join", frame("j1", Command::Join { conversation: CONVERSATION.into(), since: Some(41) })),
        ("leave", frame("l1", Command::Leave { conversation: CONVERSATION.into() })),
        ("send", frame("s1", Command::Send {
            conversation: CONVERSATION.into(),
            client_msg_id: "7f1c".into(),
            body: BODY.into(),
            reply_to: None,
            attachments: vec![],
        })),
        ("send_attachments", frame("s2", Command::Send {
            conversation: CONVERSATION.into(),
            client_msg_id: "7f1d".into(),
            body: BODY.into(),
            reply_to: Some(MESSAGE.into()),
            attachments: vec![Attachment {
                id: "att1".into(),
                name: Some("photo.jpg".into()),
                mime: Some("image/jpeg".into()),
                size: Some(123_456),
            }],
        })),
        ("edit", frame("e1", Command::Edit { message: MESSAGE.into(), body: BODY.into() })),
        ("delete", frame("d1", Command::Delete { message: MESSAGE.into() })),
        ("react", frame("r1", Command::React { message: MESSAGE.into(), emoji: "🎉".into() })),
        ("unreact", frame("r2", Command::Unreact { message: MESSAGE.into(), emoji: "🎉".into() })),
        ("typing", ClientFrame::new(Command::Typing { conversation: CONVERSATION.into() })),
        ("read", frame("m1", Command::Read { conversation: CONVERSATION.into(), seq: 49 })),
        ("ping", frame("p1", Command::Ping)),
    ]
}

fn server_frames() -> Vec<(&'static str, ServerFrame)> {
    let conversation = || CONVERSATION.to_owned();
    vec![
        (
            "welcome",
            ServerFrame::Welcome {
                user: "alice".into(),
                tenant: "acme".into(),
                name: Some("Alice".into()),
                session: "s42".into(),
                heartbeat_ms: 25_000,
                limits: Limits {
                    max_frame_bytes: 65_536,
                    max_body_bytes: 16_384,
                    messages_per_minute: 60,
                    replay_cap: 1000,
                },
                user_seq: 0,
            },
        ),
        (
            "joined",
            ServerFrame::Joined {
                reference: Some("j1".into()),
                conversation: conversation(),
                last_seq: 44,
                recovered: true,
                online: vec!["alice".into(), "bob".into()],
            },
        ),
        (
            "left",
            ServerFrame::Left {
                reference: Some("l1".into()),
                conversation: conversation(),
            },
        ),
        (
            "ack",
            ServerFrame::Ack {
                reference: Some("s1".into()),
                conversation: conversation(),
                client_msg_id: "7f1c".into(),
                id: MESSAGE.into(),
                seq: 123_456,
                ts: TS,
                duplicate: false,
            },
        ),
        (
            "ok",
            ServerFrame::Ok {
                reference: Some("e1".into()),
                seq: Some(46),
            },
        ),
        (
            "pong",
            ServerFrame::Pong {
                reference: Some("p1".into()),
            },
        ),
        (
            "error",
            ServerFrame::error(
                Some("s1".into()),
                ErrorCode::NotMember,
                "not a member of this conversation",
            ),
        ),
        (
            "message",
            ServerFrame::Message(MessageEvent {
                conversation: conversation(),
                id: MESSAGE.into(),
                seq: 123_456,
                author: "alice".into(),
                body: BODY.into(),
                ts: TS,
                client_msg_id: "7f1c".into(),
                reply_to: None,
                attachments: vec![],
            }),
        ),
        (
            "message_edited",
            ServerFrame::MessageEdited {
                conversation: conversation(),
                seq: 44,
                message: MESSAGE.into(),
                author: "bob".into(),
                body: BODY.into(),
                ts: TS,
            },
        ),
        (
            "message_deleted",
            ServerFrame::MessageDeleted {
                conversation: conversation(),
                seq: 47,
                message: MESSAGE.into(),
                by: "alice".into(),
                ts: TS,
            },
        ),
        (
            "reaction_added",
            ServerFrame::ReactionAdded {
                conversation: conversation(),
                seq: 43,
                message: MESSAGE.into(),
                user: "bob".into(),
                emoji: "👍".into(),
                ts: TS,
            },
        ),
        (
            "reaction_removed",
            ServerFrame::ReactionRemoved {
                conversation: conversation(),
                seq: 49,
                message: MESSAGE.into(),
                user: "alice".into(),
                emoji: "🎉".into(),
                ts: TS,
            },
        ),
        (
            "member_added",
            ServerFrame::MemberAdded {
                conversation: conversation(),
                seq: 50,
                user: "carol".into(),
                role: Role::Member,
                by: "alice".into(),
                ts: TS,
            },
        ),
        (
            "member_removed",
            ServerFrame::MemberRemoved {
                conversation: conversation(),
                seq: 52,
                user: "carol".into(),
                by: "carol".into(),
                ts: TS,
            },
        ),
        (
            "member_role_changed",
            ServerFrame::MemberRoleChanged {
                conversation: conversation(),
                seq: 51,
                user: "carol".into(),
                role: Role::Admin,
                by: "alice".into(),
                ts: TS,
            },
        ),
        (
            "conversation_updated",
            ServerFrame::ConversationUpdated {
                conversation: conversation(),
                seq: 53,
                title: Some("Lunch club".into()),
                archived: false,
                by: "alice".into(),
                ts: TS,
            },
        ),
        (
            "typing",
            ServerFrame::Typing {
                conversation: conversation(),
                user: "bob".into(),
            },
        ),
        (
            "read",
            ServerFrame::Read {
                conversation: conversation(),
                user: "bob".into(),
                seq: 53,
            },
        ),
    ]
}

fn client(c: &mut Criterion) {
    let mut decode = c.benchmark_group("client_decode");
    for (name, frame) in client_frames() {
        let text = serde_json::to_string(&frame).expect("serialize");
        decode.throughput(Throughput::Bytes(text.len() as u64));
        decode.bench_with_input(BenchmarkId::from_parameter(name), &text, |b, text| {
            b.iter(|| serde_json::from_str::<ClientFrame>(black_box(text)).expect("decode"))
        });
    }
    decode.finish();
    let mut encode = c.benchmark_group("client_encode");
    for (name, frame) in client_frames() {
        encode.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| serde_json::to_string(black_box(frame)).expect("encode"))
        });
    }
    encode.finish();
}

fn server(c: &mut Criterion) {
    let mut encode = c.benchmark_group("server_encode");
    for (name, frame) in server_frames() {
        encode.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| serde_json::to_string(black_box(frame)).expect("encode"))
        });
    }
    encode.finish();
    let mut decode = c.benchmark_group("server_decode");
    for (name, frame) in server_frames() {
        let text = serde_json::to_string(&frame).expect("serialize");
        decode.throughput(Throughput::Bytes(text.len() as u64));
        decode.bench_with_input(BenchmarkId::from_parameter(name), &text, |b, text| {
            b.iter(|| serde_json::from_str::<ServerFrame>(black_box(text)).expect("decode"))
        });
    }
    decode.finish();
}

fn quick() -> Criterion {
    // 60 small benchmarks: short windows keep a full run to a few minutes.
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = client, server
}
criterion_main!(benches);
