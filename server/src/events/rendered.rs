//! Committed events rendered once. The store hands over each event in its storage form
//! ([`StoredEvent`]); the first sink to take it renders its frame ([`Rendered::render`]), and the
//! same text then goes to every local subscriber, to the other nodes and to the event stream.

use confab_protocol::{EventKind, Millis, ServerFrame};
use confab_storage::StoredEvent;

/// A committed event with its frame rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The conversation's tenant (cluster channels and event topics are namespaced by it).
    pub tenant: String,
    pub conversation: String,
    pub seq: u64,
    pub kind: EventKind,
    /// For member events, the member concerned.
    pub subject: Option<String>,
    pub ts: Millis,
    /// The event's `ServerFrame` as JSON text, exactly as clients receive it.
    pub frame: String,
}

impl Rendered {
    /// Renders a committed event's frame.
    pub fn render(event: StoredEvent) -> serde_json::Result<Rendered> {
        Rendered::render_keeping(event).map(|(rendered, _)| rendered)
    }

    /// [`Rendered::render`], giving back the frame too: its text fields (a message's body,
    /// author and id) are the event's own, for a consumer that takes them instead of copying
    /// the event first.
    pub fn render_keeping(event: StoredEvent) -> serde_json::Result<(Rendered, ServerFrame)> {
        let kind = event.kind();
        let subject = event.subject().map(str::to_owned);
        let frame = event
            .body
            .into_frame(event.conversation.clone(), event.seq, event.ts);
        let rendered = Rendered {
            tenant: event.tenant,
            conversation: event.conversation,
            seq: event.seq,
            kind,
            subject,
            ts: event.ts,
            frame: serde_json::to_string(&frame)?,
        };
        Ok((rendered, frame))
    }
}

/// Renders a committed batch. An event whose frame does not serialize (none should) is logged
/// and left out rather than sent half-made.
pub fn render_all(events: Vec<StoredEvent>) -> Vec<Rendered> {
    render_all_with(events, |_, _| {})
}

/// [`render_all`], handing each rendered event's frame to `frame` as it goes (in order, only for
/// the events kept).
pub fn render_all_with(
    events: Vec<StoredEvent>,
    mut frame: impl FnMut(&Rendered, ServerFrame),
) -> Vec<Rendered> {
    let mut rendered = Vec::with_capacity(events.len());
    for event in events {
        let (conversation, seq) = (event.conversation.clone(), event.seq);
        match Rendered::render_keeping(event) {
            Ok((event, rendered_frame)) => {
                frame(&event, rendered_frame);
                rendered.push(event);
            }
            Err(err) => tracing::error!(
                error = %err,
                %conversation,
                seq,
                "dropping a committed event: its frame does not render"
            ),
        }
    }
    rendered
}

/// Where rendered events go: the hub, or the [`Tee`](super::Tee) of the hub and the stream.
/// Called on the storage writer's path, in commit order: must not block.
pub trait RenderedSink: Send + Sync + 'static {
    fn publish_rendered(&self, events: Vec<Rendered>);
}

#[cfg(test)]
mod tests {
    use confab_protocol::rest::Role;
    use confab_protocol::{EventBody, Posted};

    use super::*;

    #[test]
    fn an_event_renders_with_its_position_kind_and_subject() {
        let event = StoredEvent {
            tenant: "acme".into(),
            conversation: "c-1".into(),
            seq: 4,
            ts: 12,
            body: EventBody::MemberAdded {
                user: "cy".into(),
                role: Role::Member,
                by: "ann".into(),
            },
        };
        let rendered = Rendered::render(event.clone()).expect("render");
        assert_eq!(rendered.kind, EventKind::MemberAdded);
        assert_eq!(rendered.subject.as_deref(), Some("cy"));
        assert_eq!(
            rendered.frame,
            r#"{"type":"member_added","conversation":"c-1","seq":4,"user":"cy","role":"member","by":"ann","ts":12}"#
        );
        assert_eq!(rendered.frame, event.render().expect("the same text"));

        let message = StoredEvent {
            body: EventBody::Message(Posted {
                id: "m".into(),
                author: "ann".into(),
                body: "hi".into(),
                client_msg_id: "x".into(),
                reply_to: None,
                attachments: vec![],
            }),
            ..event
        };
        let rendered = render_all(vec![message]);
        assert_eq!(
            rendered[0].frame,
            r#"{"type":"message","conversation":"c-1","id":"m","seq":4,"author":"ann","body":"hi","ts":12,"client_msg_id":"x"}"#
        );
        assert_eq!(rendered[0].subject, None);
    }
}
