//! Reading records of the event stream back: the inverse of [`Record::encode`](super::Record)
//! for consumers in Confab itself (the search index of every node follows the stream). A record
//! is either a conversation's event ([`Decoded::Event`], its frame parsed), a media event
//! ([`Decoded::Media`], not a conversation's), or refused with a [`DecodeError`] that says why in
//! a short, stable word ([`DecodeError::reason`]) fit for a header or a metric label.

use std::borrow::Cow;

use confab_protocol::{EventKind, Millis, ServerFrame};
use serde::Deserialize;

use super::{ENVELOPE_VERSION, Envelope};

/// A record of the stream, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A conversation's durable event (boxed: a frame is large, and most records are events).
    Event(Box<StreamEvent>),
    /// A media event (`media_uploaded`, `media_deleted`): no conversation's.
    Media,
}

/// A conversation's event as read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub tenant: String,
    pub conversation: String,
    pub seq: u64,
    pub ts: Millis,
    /// The event's frame, as WebSocket clients receive it.
    pub frame: ServerFrame,
}

/// Why a record cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the record has no value")]
    Empty,
    #[error("the value is not an envelope: {0}")]
    Envelope(serde_json::Error),
    #[error("envelope version {0} is not supported (this node reads {ENVELOPE_VERSION})")]
    Version(u32),
    #[error("the envelope's event is not a frame: {0}")]
    Frame(serde_json::Error),
    #[error("the frame ({frame}) is not the envelope's event ({envelope})")]
    Mismatch { envelope: String, frame: String },
}

impl DecodeError {
    /// The reason in one word: `empty`, `envelope`, `version`, `frame` or `mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::Envelope(_) => "envelope",
            DecodeError::Version(_) => "version",
            DecodeError::Frame(_) => "frame",
            DecodeError::Mismatch { .. } => "mismatch",
        }
    }
}

/// The fields every envelope has, read first: the version decides how to read the rest, and
/// the type tells media envelopes (no conversation, no seq) apart.
#[derive(Deserialize)]
struct Head<'a> {
    v: u32,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// Decodes a record's value.
pub fn decode(payload: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let payload = payload
        .filter(|p| !p.is_empty())
        .ok_or(DecodeError::Empty)?;
    let head: Head<'_> = serde_json::from_slice(payload).map_err(DecodeError::Envelope)?;
    if head.v != ENVELOPE_VERSION {
        return Err(DecodeError::Version(head.v));
    }
    if matches!(head.kind.as_ref(), "media_uploaded" | "media_deleted") {
        return Ok(Decoded::Media);
    }
    let envelope: Envelope<'_> = serde_json::from_slice(payload).map_err(DecodeError::Envelope)?;
    let frame: ServerFrame =
        serde_json::from_str(envelope.event.get()).map_err(DecodeError::Frame)?;
    let position = frame.durable_position();
    if position != Some((&envelope.conversation, envelope.seq))
        || frame_kind(&frame) != Some(envelope.kind)
    {
        return Err(DecodeError::Mismatch {
            envelope: format!(
                "{} {}:{}",
                envelope.kind.as_str(),
                envelope.conversation,
                envelope.seq
            ),
            frame: match position {
                Some((conversation, seq)) => format!("{conversation}:{seq}"),
                None => "not a durable event".to_owned(),
            },
        });
    }
    Ok(Decoded::Event(Box::new(StreamEvent {
        tenant: envelope.tenant.into_owned(),
        conversation: envelope.conversation.into_owned(),
        seq: envelope.seq,
        ts: envelope.ts,
        frame,
    })))
}

/// The kind of a durable frame (`None` for the frames that are not events).
fn frame_kind(frame: &ServerFrame) -> Option<EventKind> {
    Some(match frame {
        ServerFrame::Message(_) => EventKind::Message,
        ServerFrame::MessageEdited { .. } => EventKind::MessageEdited,
        ServerFrame::MessageDeleted { .. } => EventKind::MessageDeleted,
        ServerFrame::ReactionAdded { .. } => EventKind::ReactionAdded,
        ServerFrame::ReactionRemoved { .. } => EventKind::ReactionRemoved,
        ServerFrame::MemberAdded { .. } => EventKind::MemberAdded,
        ServerFrame::MemberRemoved { .. } => EventKind::MemberRemoved,
        ServerFrame::MemberRoleChanged { .. } => EventKind::MemberRoleChanged,
        ServerFrame::ConversationUpdated { .. } => EventKind::ConversationUpdated,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use confab_protocol::rest::MediaInfo;
    use confab_protocol::{EventBody, Posted};
    use confab_storage::StoredEvent;

    use super::*;
    use crate::events::{Record, Rendered};

    fn stored(seq: u64, body: EventBody) -> StoredEvent {
        StoredEvent {
            tenant: "acme".into(),
            conversation: "c-1".into(),
            seq,
            ts: 1_700_000_000_000 + seq as i64,
            body,
        }
    }

    /// The producer's own encoding, as it goes on the topic.
    fn produced(event: StoredEvent) -> Vec<u8> {
        let rendered = Rendered::render(event).expect("render");
        Record::encode(&rendered).expect("encode").payload
    }

    #[test]
    fn produced_records_decode_to_their_events() {
        let events = [
            stored(
                1,
                EventBody::Message(Posted {
                    id: "m-1".into(),
                    author: "ann".into(),
                    body: "hello \"world\" ✓".into(),
                    client_msg_id: "x".into(),
                    reply_to: None,
                    attachments: vec![],
                }),
            ),
            stored(
                2,
                EventBody::MessageEdited {
                    message: "m-1".into(),
                    author: "ann".into(),
                    body: "hello all".into(),
                },
            ),
            stored(
                3,
                EventBody::MessageDeleted {
                    message: "m-1".into(),
                    by: "bob".into(),
                },
            ),
            stored(
                4,
                EventBody::ReactionAdded {
                    message: "m-1".into(),
                    user: "bob".into(),
                    emoji: "👍".into(),
                },
            ),
        ];
        for event in events {
            let frame =
                event
                    .body
                    .clone()
                    .into_frame(event.conversation.clone(), event.seq, event.ts);
            let decoded = decode(Some(&produced(event.clone()))).expect("decodes");
            assert_eq!(
                decoded,
                Decoded::Event(Box::new(StreamEvent {
                    tenant: event.tenant,
                    conversation: event.conversation,
                    seq: event.seq,
                    ts: event.ts,
                    frame,
                }))
            );
        }
    }

    #[test]
    fn media_records_are_told_apart() {
        let record = Record::media_deleted("acme", "f-1", "ann", 5).expect("encode");
        assert_eq!(
            decode(Some(&record.payload)).expect("decodes"),
            Decoded::Media
        );
        let file: MediaInfo = serde_json::from_value(serde_json::json!({
            "id": "f-2", "name": "a.txt", "content_type": "text/plain", "size": 1,
            "sha256": "00", "created_at": 1, "uploader": "ann", "conversations": [],
            "downloads": 0
        }))
        .expect("media info");
        let record = Record::media_uploaded("acme", &file).expect("encode");
        assert_eq!(
            decode(Some(&record.payload)).expect("decodes"),
            Decoded::Media
        );
    }

    #[test]
    fn what_is_not_an_event_is_refused_with_a_reason() {
        let good = String::from_utf8(produced(stored(
            7,
            EventBody::ReactionRemoved {
                message: "m".into(),
                user: "u".into(),
                emoji: "e".into(),
            },
        )))
        .expect("utf-8");
        let version = good.replace(r#""v":1"#, r#""v":2"#);
        // The frame's type only (the envelope's is followed by the tenant).
        let frame = good.replace(
            r#""type":"reaction_removed","conv"#,
            r#""type":"nope","conv"#,
        );
        // The envelope's seq only (the frame's is followed by the message).
        let mismatch = good.replace(r#""seq":7,"ts""#, r#""seq":8,"ts""#);
        let cases: [(Option<&[u8]>, &str); 7] = [
            (None, "empty"),
            (Some(b""), "empty"),
            (Some(b"\xff\x00garbage"), "envelope"),
            (Some(br#"{"v":1}"#), "envelope"),
            (Some(version.as_bytes()), "version"),
            (Some(frame.as_bytes()), "frame"),
            (Some(mismatch.as_bytes()), "mismatch"),
        ];
        for (payload, reason) in cases {
            let err = decode(payload).expect_err("refused");
            assert_eq!(err.reason(), reason, "{err} for {payload:?}");
        }
    }
}
