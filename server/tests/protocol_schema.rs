//! The JSON Schema served at `/v1/protocol.schema.json` against real traffic: every frame the
//! server sends in a session (welcome, joined, ack, message and the other durable events,
//! typing, read, presence, errors including `rate_limited`, pong, left) and every frame the
//! client sends is validated, as the text that crossed the socket, against the served document.
//!
//! Serde ignores unknown fields, so the served schema allows them; a renamed optional field
//! would then still pass. So each frame is also checked against a strict wrapper of the same
//! definitions (`unevaluatedProperties: false` over `$defs/ServerFrame`): a field the schema
//! does not name fails the test.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Server, WsClient, send_command, token};
use confab_protocol::{ClientFrame, Command};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Validators built from the served document.
struct Schemas {
    /// The served document itself (either direction).
    any: jsonschema::Validator,
    client: jsonschema::Validator,
    server: jsonschema::Validator,
}

impl Schemas {
    async fn fetch(server: &Server) -> Schemas {
        let response = server
            .client()
            .get(format!("{}/v1/protocol.schema.json", server.base()))
            .send()
            .await
            .expect("GET /v1/protocol.schema.json");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("content-type")
            .to_owned();
        assert_eq!(content_type, "application/schema+json");
        assert!(response.headers().contains_key("cache-control"));
        let document: Value = response.json().await.expect("schema is JSON");
        let strict = |definition: &str| {
            json!({
                "$schema": document["$schema"],
                "$defs": document["$defs"],
                "$ref": format!("#/$defs/{definition}"),
                "unevaluatedProperties": false,
            })
        };
        Schemas {
            any: jsonschema::validator_for(&document).expect("served schema compiles"),
            client: jsonschema::validator_for(&strict("ClientFrame")).expect("client schema"),
            server: jsonschema::validator_for(&strict("ServerFrame")).expect("server schema"),
        }
    }

    fn check(&self, direction: &jsonschema::Validator, text: &str) -> Value {
        let frame: Value = serde_json::from_str(text).expect("frame is JSON");
        let errors: Vec<String> = direction
            .iter_errors(&frame)
            .chain(self.any.iter_errors(&frame))
            .map(|err| format!("{err} at {}", err.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{text} does not match the schema: {errors:?}"
        );
        frame
    }
}

/// A client whose every frame, both ways, is checked against the schema.
struct Checked<'a> {
    ws: WsClient,
    schemas: &'a Schemas,
    /// The `type`s of the server frames seen.
    seen: BTreeSet<String>,
}

impl<'a> Checked<'a> {
    async fn send(&mut self, command: Command) -> String {
        let reference = self.ws.new_ref();
        let text = serde_json::to_string(&ClientFrame::with_ref(reference.clone(), command))
            .expect("serialize");
        self.schemas.check(&self.schemas.client, &text);
        self.ws.send_text(text).await;
        reference
    }

    /// Reads (and checks) frames until one of `kind`, optionally answering `reference`.
    async fn until(&mut self, kind: &str, reference: Option<&str>) -> Value {
        loop {
            let message = self
                .ws
                .next_message(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("no {kind} frame within 10 s"))
                .expect("websocket read");
            let Message::Text(text) = message else {
                continue;
            };
            let frame = self.schemas.check(&self.schemas.server, text.as_str());
            let frame_kind = frame["type"].as_str().expect("type").to_owned();
            self.seen.insert(frame_kind.clone());
            let answers = reference.is_none_or(|r| frame["ref"] == r);
            if frame_kind == kind && answers {
                return frame;
            }
        }
    }

    async fn request(&mut self, command: Command, reply: &str) -> Value {
        let reference = self.send(command).await;
        self.until(reply, Some(&reference)).await
    }
}

async fn connect<'a>(server: &Server, schemas: &'a Schemas, user: &str) -> Checked<'a> {
    let url = format!("{}?presence=true&token={}", server.ws_url(), token(user));
    let request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("ws request");
    let ws = WsClient::open(request, None).await.expect("upgrade");
    let mut client = Checked {
        ws,
        schemas,
        seen: BTreeSet::new(),
    };
    client.until("welcome", None).await;
    client
}

#[tokio::test]
async fn every_frame_of_a_session_matches_the_served_schema() {
    let server = Server::in_process(&["--message-rate-per-minute", "8"]).await;
    let schemas = Schemas::fetch(&server).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = connect(&server, &schemas, "alice").await;
    let mut bob = connect(&server, &schemas, "bob").await;
    let join = |since| Command::Join {
        conversation: conversation.clone(),
        since,
    };
    alice.request(join(None), "joined").await;
    bob.request(join(Some(0)), "joined").await;
    alice.until("presence", None).await;

    let ack = alice
        .request(send_command(&conversation, "m-1", "hello"), "ack")
        .await;
    let message = ack["id"].as_str().expect("id").to_owned();
    bob.until("message", None).await;
    let again = alice
        .request(send_command(&conversation, "m-1", "hello"), "ack")
        .await;
    assert_eq!(again["duplicate"], true);
    let edit = Command::Edit {
        message: message.clone(),
        body: "hello, edited".into(),
    };
    alice.request(edit, "ok").await;
    bob.until("message_edited", None).await;
    let react = |emoji: &str| (message.clone(), emoji.to_owned());
    let (m, emoji) = react("👍");
    alice
        .request(Command::React { message: m, emoji }, "ok")
        .await;
    bob.until("reaction_added", None).await;
    let (m, emoji) = react("👍");
    alice
        .request(Command::Unreact { message: m, emoji }, "ok")
        .await;
    bob.until("reaction_removed", None).await;
    bob.request(
        Command::Read {
            conversation: conversation.clone(),
            seq: ack["seq"].as_u64().expect("seq"),
        },
        "ok",
    )
    .await;
    alice.until("read", None).await;
    let typing = Command::Typing {
        conversation: conversation.clone(),
    };
    alice.request(typing, "ok").await;
    bob.until("typing", None).await;
    alice.request(Command::Delete { message }, "ok").await;
    bob.until("message_deleted", None).await;
    alice.request(Command::Ping, "pong").await;
    let not_found = Command::Delete {
        message: "no-such-message".into(),
    };
    alice.request(not_found, "error").await;
    // Past the budget of 8 a minute: `rate_limited`, with its retry hint.
    let limited = loop {
        let client_msg_id = format!("burst-{}", alice.ws.new_ref());
        let reference = alice
            .send(send_command(&conversation, &client_msg_id, "x"))
            .await;
        let reply = alice.until_reply(&reference).await;
        if reply["type"] == "error" {
            break reply;
        }
    };
    assert_eq!(limited["code"], "rate_limited");
    assert!(limited["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));
    bob.request(
        Command::Leave {
            conversation: conversation.clone(),
        },
        "left",
    )
    .await;
    alice.until("presence", None).await;

    for (client, kinds) in [
        (
            &alice,
            &[
                "welcome", "joined", "presence", "ack", "ok", "read", "pong", "error",
            ][..],
        ),
        (
            &bob,
            &[
                "welcome",
                "joined",
                "message",
                "message_edited",
                "message_deleted",
                "reaction_added",
                "reaction_removed",
                "typing",
                "left",
            ],
        ),
    ] {
        for kind in kinds {
            assert!(
                client.seen.contains(*kind),
                "no {kind} in {:?}",
                client.seen
            );
        }
    }
}

#[tokio::test]
async fn user_event_frames_match_the_served_schema() {
    let server = Server::in_process(&[]).await;
    let schemas = Schemas::fetch(&server).await;
    let mut bob = connect(&server, &schemas, "bob").await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let added = bob.until("conversation_added", None).await;
    assert_eq!(added["summary"]["id"], conversation.as_str());
    let member = format!("/v1/conversations/{conversation}/members/bob");
    let role = serde_json::json!({"role": "admin"});
    assert_eq!(server.patch(&member, &token("alice"), role).await.0, 200);
    bob.until("role_changed", None).await;
    let sent = server.rest_send("alice", &conversation, "m-1", "hi").await;
    let read = Command::Read {
        conversation: conversation.clone(),
        seq: sent["seq"].as_u64().expect("seq"),
    };
    bob.request(read, "ok").await;
    bob.until("read_moved", None).await;
    assert_eq!(server.delete(&member, &token("alice")).await.0, 200);
    bob.until("conversation_removed", None).await;
    let synced = bob
        .request(Command::UserResume { since: 0 }, "user_sync")
        .await;
    assert_eq!(synced["resync"], false);
    assert_eq!(synced["user_seq"], 4);
    bob.request(Command::UserResume { since: 9 }, "user_sync")
        .await;
}

impl Checked<'_> {
    /// The frame answering `reference`, whatever its type.
    async fn until_reply(&mut self, reference: &str) -> Value {
        loop {
            let message = self
                .ws
                .next_message(Duration::from_secs(10))
                .await
                .expect("a reply within 10 s")
                .expect("websocket read");
            let Message::Text(text) = message else {
                continue;
            };
            let frame = self.schemas.check(&self.schemas.server, text.as_str());
            if let Some(kind) = frame["type"].as_str() {
                self.seen.insert(kind.to_owned());
            }
            if frame["ref"] == reference {
                return frame;
            }
        }
    }
}

/// The strict check is what catches a renamed field: the served schema, like serde, lets an
/// unknown field through; the strict wrapper does not.
#[tokio::test]
async fn a_renamed_field_fails_the_check() {
    let server = Server::in_process(&[]).await;
    let schemas = Schemas::fetch(&server).await;
    let ack = json!({"type": "ack", "conversation": "c", "client_msg_id": "m", "id": "i",
        "seq": 1, "ts": 2, "duplicate": true});
    assert!(schemas.server.is_valid(&ack));
    let mut renamed = ack.clone();
    let duplicate = renamed
        .as_object_mut()
        .and_then(|object| object.remove("duplicate"))
        .expect("duplicate");
    renamed["is_duplicate"] = duplicate;
    assert!(
        schemas.any.is_valid(&renamed),
        "serde ignores it, so may the schema"
    );
    assert!(
        !schemas.server.is_valid(&renamed),
        "the strict check refuses it"
    );
    let mut missing = ack;
    missing.as_object_mut().map(|object| object.remove("seq"));
    assert!(
        !schemas.any.is_valid(&missing),
        "a required field is required"
    );
    // A client's attachment object denies unknown fields, as serde does.
    let send = json!({"type": "send", "conversation": "c", "client_msg_id": "m", "body": "b",
        "attachments": ["a1", {"id": "a2"}]});
    assert!(schemas.client.is_valid(&send));
    let mut extra = send;
    extra["attachments"][1]["colour"] = json!("red");
    assert!(!schemas.any.is_valid(&extra));
}
