//! What crosses Redis: the channel names and the header line of each message.

use std::borrow::Cow;
use std::sync::Arc;

use confab_protocol::EventKind;
use serde::{Deserialize, Serialize};

/// The channel every node subscribes to, on every shard, for heartbeats and user nudges.
pub(super) const NODES_CHANNEL: &str = "confab:nodes";
/// The wire format of [`Header`]. The nodes of a cluster run one version: a message of another
/// is dropped and counted (`confab_fanout_dropped_total{reason="version"}`).
pub const WIRE_VERSION: u32 = 1;

/// The header line of a published message, e.g.
/// `{"v":1,"type":"event","node":"…","kind":"message","seq":7}`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Header<'a> {
    /// [`WIRE_VERSION`].
    pub v: u32,
    #[serde(rename = "type")]
    pub message: MessageType,
    /// The node that published it.
    #[serde(borrow)]
    pub node: Cow<'a, str>,
    /// `event`: the durable event's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EventKind>,
    /// `event`: its seq. `beat`: when the sender sent it, on its own clock (see
    /// `liveness`; only the sender reads it, older nodes ignore it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// `event`: the member it concerns (member events); `presence`: whose presence changed.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub user: Option<Cow<'a, str>>,
    /// `ephemeral`: the user whose connections skip the frame (its sender).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub skip_user: Option<Cow<'a, str>>,
    /// `presence`: whether `user` is now online on `node`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub online: bool,
    /// `beat`: the shard it was published on and how many the sender has, so that a node
    /// configured with another list of shards is noticed (nodes that predate sharding send
    /// neither, and unknown fields are ignored, so the wire version stays 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// `snapshot` sent to one node's own channel ([`inbox`]): the channel of the room it is
    /// about.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub room: Option<Cow<'a, str>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl<'a> Header<'a> {
    pub fn new(node: &'a str, message: MessageType) -> Header<'a> {
        Header {
            v: WIRE_VERSION,
            message,
            node: Cow::Borrowed(node),
            kind: None,
            seq: 0,
            user: None,
            skip_user: None,
            online: false,
            shard: None,
            shards: None,
            room: None,
        }
    }
}

/// What a message is; `sync` and `snapshot` carry a JSON array of user ids as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum MessageType {
    /// A durable event: deliver the text to the room's subscribers.
    Event,
    /// An ephemeral frame (typing, read): deliver, never replayed.
    Ephemeral,
    /// The origin's first connection of `user` joined the room (`online`) or its last left.
    Presence,
    /// The origin opened the room: here are its users; answer with yours.
    Sync,
    /// Answer to `sync`: the origin's users in the room, sent to the asker's own channel
    /// ([`inbox`]) with the room's channel in `room` (on the room's shard, so it cannot
    /// overtake the origin's presence changes published after it).
    Snapshot,
    /// Answers to several `sync`s of one node in one message, on that node's own channel
    /// ([`inbox`]) and on the shard of all the rooms it names: the text is a JSON array of
    /// `[room channel, [users]]` pairs. Nodes older than this message drop it as malformed
    /// (counted), so upgrade every node together.
    Snapshots,
    /// The origin is alive (on [`NODES_CHANNEL`] of every shard).
    Beat,
    /// `user` of the tenant in the text has new user events (on [`NODES_CHANNEL`] of the
    /// user's shard: a user's connections may be on any node).
    User,
    /// The origin could not publish some of the room's durable events (its publish queue was
    /// full, or Redis failed it): the receivers' sessions catch up from storage. Without it, a
    /// lost event would be noticed only when a later one arrives, and the room's last event
    /// never. Nodes older than this message drop it as malformed (counted).
    Resync,
}

/// A message: the header line, then `text`.
pub(super) fn message(header: &Header<'_>, text: &str) -> Vec<u8> {
    let mut payload = serde_json::to_vec(header).unwrap_or_default();
    payload.push(b'\n');
    payload.extend_from_slice(text.as_bytes());
    payload
}

/// The header and text of a message; `None` when it is malformed.
pub(super) fn split(payload: &[u8]) -> Option<(Header<'_>, &str)> {
    let at = payload.iter().position(|b| *b == b'\n')?;
    let header = serde_json::from_slice::<Header<'_>>(&payload[..at]).ok()?;
    let text = std::str::from_utf8(&payload[at + 1..]).ok()?;
    Some((header, text))
}

/// A node's own channel, on every shard: answers meant for it alone. `!` keeps it apart from
/// every room channel (`confab:…`).
pub(super) fn inbox(node: &str) -> String {
    format!("confab!node:{node}")
}

pub(super) fn channel(tenant: &str, conversation: &str) -> String {
    format!("confab:{tenant}:{conversation}")
}

/// The tenant and conversation of a room's channel name.
pub(super) fn room_of(channel: &str) -> Option<(Arc<str>, Arc<str>)> {
    let rest = channel.strip_prefix("confab:")?;
    let (tenant, conversation) = rest.rsplit_once(':')?;
    Some((tenant.into(), conversation.into()))
}

/// The text of a [`MessageType::Snapshots`]: (room channel, users) pairs.
pub(super) fn snapshots_text(rooms: &[(String, &[String])]) -> String {
    serde_json::to_string(rooms).unwrap_or_default()
}

/// The (room channel, users) pairs of a [`MessageType::Snapshots`]; `None` when malformed.
pub(super) fn read_snapshots(text: &str) -> Option<Vec<(String, Vec<String>)>> {
    serde_json::from_str(text).ok()
}
