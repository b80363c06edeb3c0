//! Fan-out between nodes over Redis pub/sub.
//!
//! Each node subscribes only to the channels of rooms with local members
//! (`confab:{tenant}:{conversation}`) and publishes each locally originated event once. A message
//! is one header line (JSON, [`Header`]) and the frame text, which other nodes deliver as is; a
//! node ignores its own publications. Order per conversation comes from the seq: a session that
//! sees a hole fills it from storage.
//!
//! Presence crosses nodes as control messages on the same room channels: each node publishes its
//! own per-room transitions (`presence`); a node that subscribes to a room asks it for a snapshot
//! (`sync`, carrying its own users) and the others answer with theirs (`snapshot`). Nodes beat on
//! `confab:nodes` every [`BEAT`]; one silent for [`PEER_EXPIRY`] is dropped and its users go
//! offline where no other node has them. A resubscription after an outage syncs every open room
//! again. A user's new user events are announced on `confab:nodes` too (`user`, no payload but
//! the tenant): their connections may be on any node, and each reads the events from storage.
//!
//! Redis loss never stops local rooms: publishes are dropped (counted), the subscriber
//! reconnects with backoff and resubscribes, and then every local subscriber is told to catch
//! up from storage ([`Inbound::Resync`]). `/ready` and `confab_fanout_connected` report outages.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use confab_protocol::EventKind;
use futures_util::StreamExt;
use metrics::{counter, gauge};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Fanout, INBOUND_QUEUE, Inbound, Link};
use crate::hub::{Delivered, Ephemeral};
use crate::metrics::{
    FANOUT_CONNECTED as CONNECTED, FANOUT_DROPPED_TOTAL as DROPPED_TOTAL,
    FANOUT_INBOUND_WAITS_TOTAL as INBOUND_WAITS_TOTAL, FANOUT_PUBLISHED_TOTAL as PUBLISHED_TOTAL,
    FANOUT_RECEIVED_TOTAL as RECEIVED_TOTAL, FANOUT_RECONNECTS_TOTAL as RECONNECTS_TOTAL,
};

/// Messages waiting to be published before new ones are dropped.
const PUBLISH_QUEUE: usize = 16 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a node says it is alive.
pub const BEAT: Duration = Duration::from_secs(2);
/// How long a silent node counts as alive (three beats).
pub const PEER_EXPIRY: Duration = Duration::from_secs(6);
/// The channel every node subscribes to for heartbeats.
const NODES_CHANNEL: &str = "confab:nodes";
/// The wire format of [`Header`]. The nodes of a cluster run one version: a message of another
/// is dropped and counted (`confab_fanout_dropped_total{reason="version"}`).
pub const WIRE_VERSION: u32 = 1;

/// Why the fan-out could not start.
#[derive(Debug, thiserror::Error)]
#[error("redis fan-out: {0}")]
pub struct FanoutError(#[from] redis::RedisError);

/// The header line of a published message, e.g.
/// `{"v":1,"type":"event","node":"…","kind":"message","seq":7}`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Header<'a> {
    /// [`WIRE_VERSION`].
    v: u32,
    #[serde(rename = "type")]
    message: MessageType,
    /// The node that published it.
    #[serde(borrow)]
    node: Cow<'a, str>,
    /// `event`: the durable event's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<EventKind>,
    /// `event`: its seq.
    #[serde(default, skip_serializing_if = "is_zero")]
    seq: u64,
    /// `event`: the member it concerns (member events); `presence`: whose presence changed.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    user: Option<Cow<'a, str>>,
    /// `ephemeral`: the user whose connections skip the frame (its sender).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    skip_user: Option<Cow<'a, str>>,
    /// `presence`: whether `user` is now online on `node`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    online: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl<'a> Header<'a> {
    fn new(node: &'a str, message: MessageType) -> Header<'a> {
        Header {
            v: WIRE_VERSION,
            message,
            node: Cow::Borrowed(node),
            kind: None,
            seq: 0,
            user: None,
            skip_user: None,
            online: false,
        }
    }
}

/// What a message is; `sync` and `snapshot` carry a JSON array of user ids as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MessageType {
    /// A durable event: deliver the text to the room's subscribers.
    Event,
    /// An ephemeral frame (typing, read): deliver, never replayed.
    Ephemeral,
    /// The origin's first connection of `user` joined the room (`online`) or its last left.
    Presence,
    /// The origin opened the room: here are its users; answer with yours.
    Sync,
    /// Answer to `sync`: the origin's users in the room.
    Snapshot,
    /// The origin is alive.
    Beat,
    /// `user` of the tenant in the text has new user events (on [`NODES_CHANNEL`]: a user's
    /// connections may be on any node).
    User,
}

fn channel(tenant: &str, conversation: &str) -> String {
    format!("confab:{tenant}:{conversation}")
}

/// The tenant and conversation of a room's channel name.
fn room_of(channel: &str) -> Option<(Arc<str>, Arc<str>)> {
    let rest = channel.strip_prefix("confab:")?;
    let (tenant, conversation) = rest.rsplit_once(':')?;
    Some((tenant.into(), conversation.into()))
}

/// The rooms a subscriber connection follows: channel name → (tenant, conversation), shared
/// with every message received on it.
type Followed = HashMap<String, (Arc<str>, Arc<str>)>;

/// The Redis fan-out of one node.
pub struct RedisFanout {
    node: String,
    publish_tx: mpsc::Sender<(String, Vec<u8>)>,
    /// Desired subscriptions: channel → number of opens not yet closed.
    wanted: Mutex<HashMap<String, usize>>,
    changed: Notify,
    connected: AtomicBool,
    /// Other nodes heard from, and when last.
    peers: Mutex<HashMap<String, Instant>>,
    /// Stops the background tasks ([`Fanout::close`]).
    stop: CancellationToken,
}

impl RedisFanout {
    /// Connects to Redis and starts the publisher, subscriber and heartbeat tasks. Fails if
    /// Redis cannot be reached at start; later outages are survived. The tasks stop on
    /// [`Fanout::close`], or when the link's inbound receiver is dropped.
    pub async fn start(url: &str) -> Result<Link, FanoutError> {
        let client = redis::Client::open(url)?;
        let publisher = client.get_connection_manager().await?;
        // Fail fast on a bad address or credentials for the subscriber too.
        drop(client.get_async_pubsub().await?);
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let fanout = Arc::new(RedisFanout {
            node: uuid::Uuid::new_v4().simple().to_string(),
            publish_tx,
            wanted: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            connected: AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        });
        tokio::spawn(publish_loop(publisher, publish_rx, fanout.stop.clone()));
        tokio::spawn(beat_loop(fanout.clone(), inbound_tx.clone()));
        tokio::spawn(subscribe_loop(client, fanout.clone(), inbound_tx));
        tracing::info!(node = %fanout.node, "redis fan-out started");
        Ok(Link {
            fanout,
            inbound: inbound_rx,
        })
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
        gauge!(CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }

    fn enqueue(&self, channel: String, header: &Header<'_>, text: &str) {
        let Ok(mut payload) = serde_json::to_vec(header) else {
            return;
        };
        payload.push(b'\n');
        payload.extend_from_slice(text.as_bytes());
        if self.publish_tx.try_send((channel, payload)).is_err() {
            counter!(DROPPED_TOTAL, "reason" => "queue_full").increment(1);
        }
    }

    fn wanted_channels(&self) -> HashSet<String> {
        let wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        wanted.keys().cloned().collect()
    }

    /// Notes that `node` is alive.
    fn heard_from(&self, node: &str) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        match peers.get_mut(node) {
            Some(seen) => *seen = Instant::now(),
            None => {
                tracing::info!(peer = node, "fan-out peer appeared");
                peers.insert(node.to_owned(), Instant::now());
            }
        }
    }

    /// Forgets the nodes silent for longer than [`PEER_EXPIRY`]; returns them.
    fn expire_peers(&self) -> Vec<String> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let expired: Vec<String> = peers
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) > PEER_EXPIRY)
            .map(|(node, _)| node.clone())
            .collect();
        for node in &expired {
            peers.remove(node);
        }
        expired
    }

    /// Reads a message from another node: what the hub must do with it, if anything.
    fn receive(&self, followed: &Followed, channel: &str, payload: &[u8]) -> Option<Inbound> {
        let Some(split) = payload.iter().position(|b| *b == b'\n') else {
            return dropped("malformed");
        };
        let (Ok(header), Ok(text)) = (
            serde_json::from_slice::<Header<'_>>(&payload[..split]),
            std::str::from_utf8(&payload[split + 1..]),
        ) else {
            return dropped("malformed");
        };
        if header.v != WIRE_VERSION {
            return dropped("version");
        }
        if header.node == self.node {
            return None;
        }
        counter!(RECEIVED_TOTAL).increment(1);
        if !matches!(header.message, MessageType::Event | MessageType::Ephemeral) {
            // Control messages (beats, presence) keep a peer alive: a node's users are recorded
            // here only from them, so event deliveries need not touch the peer table.
            self.heard_from(&header.node);
        }
        if header.message == MessageType::User {
            let Some(user) = header.user else {
                return dropped("malformed");
            };
            return Some(Inbound::User {
                tenant: Arc::from(text),
                user: user.into_owned(),
            });
        }
        // Not (or no longer) followed: the nodes' channel, or a room just closed here.
        let (tenant, conversation) = followed.get(channel)?.clone();
        let node = || header.node.clone().into_owned();
        match header.message {
            MessageType::Beat | MessageType::User => None,
            MessageType::Event => {
                let Some(kind) = header.kind else {
                    return dropped("malformed");
                };
                Some(Inbound::Event {
                    tenant,
                    event: Delivered::remote(
                        conversation,
                        header.seq,
                        kind,
                        header.user.map(Cow::into_owned),
                        Utf8Bytes::from(text),
                    ),
                })
            }
            MessageType::Ephemeral => Some(Inbound::Ephemeral {
                tenant,
                frame: Ephemeral {
                    conversation,
                    text: Utf8Bytes::from(text),
                },
                skip_user: header.skip_user.map(Cow::into_owned),
            }),
            MessageType::Presence => {
                let Some(user) = header.user else {
                    return dropped("malformed");
                };
                Some(Inbound::Presence {
                    tenant,
                    conversation,
                    node: node(),
                    user: user.into_owned(),
                    online: header.online,
                })
            }
            MessageType::Sync | MessageType::Snapshot => {
                let Ok(users) = serde_json::from_str::<Vec<String>>(text) else {
                    return dropped("malformed");
                };
                Some(Inbound::Users {
                    tenant,
                    conversation,
                    node: node(),
                    users,
                    answer: header.message == MessageType::Sync,
                })
            }
        }
    }
}

impl Fanout for RedisFanout {
    fn open_room(&self, tenant: &str, conversation: &str) {
        *self
            .wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(channel(tenant, conversation))
            .or_default() += 1;
        self.changed.notify_one();
    }

    fn close_room(&self, tenant: &str, conversation: &str) {
        let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        let key = channel(tenant, conversation);
        if let Some(count) = wanted.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                wanted.remove(&key);
            }
        }
        drop(wanted);
        self.changed.notify_one();
    }

    fn publish_event(&self, tenant: &str, event: &Delivered) {
        let header = Header {
            kind: Some(event.kind),
            seq: event.seq,
            user: event.subject.as_deref().map(Cow::Borrowed),
            ..Header::new(&self.node, MessageType::Event)
        };
        self.enqueue(channel(tenant, &event.conversation), &header, &event.text);
    }

    fn publish_ephemeral(&self, tenant: &str, frame: &Ephemeral, skip_user: Option<&str>) {
        let header = Header {
            skip_user: skip_user.map(Cow::Borrowed),
            ..Header::new(&self.node, MessageType::Ephemeral)
        };
        self.enqueue(channel(tenant, &frame.conversation), &header, &frame.text);
    }

    fn publish_presence(&self, tenant: &str, conversation: &str, user: &str, online: bool) {
        let header = Header {
            user: Some(Cow::Borrowed(user)),
            online,
            ..Header::new(&self.node, MessageType::Presence)
        };
        self.enqueue(channel(tenant, conversation), &header, "");
    }

    fn publish_users(&self, tenant: &str, conversation: &str, users: &[String], ask_back: bool) {
        let Ok(text) = serde_json::to_string(users) else {
            return;
        };
        let message = if ask_back {
            MessageType::Sync
        } else {
            MessageType::Snapshot
        };
        let header = Header::new(&self.node, message);
        self.enqueue(channel(tenant, conversation), &header, &text);
    }

    fn publish_user(&self, tenant: &str, user: &str) {
        let header = Header {
            user: Some(Cow::Borrowed(user)),
            ..Header::new(&self.node, MessageType::User)
        };
        self.enqueue(NODES_CHANNEL.to_owned(), &header, tenant);
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.stop.cancel();
    }
}

/// Hands a message to the hub. A full channel is waited on (and counted): the subscriber stops
/// reading meanwhile, and Redis buffers. False when the hub is gone.
async fn hand_over(inbound: &mpsc::Sender<Inbound>, item: Inbound) -> bool {
    match inbound.try_send(item) {
        Ok(()) => true,
        Err(TrySendError::Full(item)) => {
            counter!(INBOUND_WAITS_TOTAL).increment(1);
            inbound.send(item).await.is_ok()
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

/// Beats on [`NODES_CHANNEL`] and expires silent peers.
async fn beat_loop(fanout: Arc<RedisFanout>, inbound: mpsc::Sender<Inbound>) {
    let mut ticker = tokio::time::interval(BEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = fanout.stop.cancelled() => return,
            _ = inbound.closed() => return,
            _ = ticker.tick() => {}
        }
        let beat = Header::new(&fanout.node, MessageType::Beat);
        fanout.enqueue(NODES_CHANNEL.to_owned(), &beat, "");
        for node in fanout.expire_peers() {
            tracing::warn!(peer = %node, "fan-out peer silent; its users go offline");
            if !hand_over(&inbound, Inbound::NodeGone(node)).await {
                return;
            }
        }
    }
}

async fn publish_loop(
    mut conn: redis::aio::ConnectionManager,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    stop: CancellationToken,
) {
    loop {
        let (channel, payload) = tokio::select! {
            _ = stop.cancelled() => return,
            next = rx.recv() => match next {
                Some(item) => item,
                None => return,
            },
        };
        match conn.publish::<_, _, i64>(&channel, payload).await {
            Ok(_) => counter!(PUBLISHED_TOTAL).increment(1),
            Err(err) => {
                counter!(DROPPED_TOTAL, "reason" => "redis_error").increment(1);
                tracing::warn!(error = %err, "redis publish failed; receivers will fill the gap from storage");
            }
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    fanout: Arc<RedisFanout>,
    inbound: mpsc::Sender<Inbound>,
) {
    let policy = reconnect_policy();
    let mut delays = policy.build();
    let mut first = true;
    loop {
        let session = tokio::select! {
            _ = fanout.stop.cancelled() => return,
            _ = inbound.closed() => return,
            session = run_subscriber(&client, &fanout, &inbound, first) => session,
        };
        match session {
            Ok(Ended::Shutdown) => return,
            // It was up: the next outage starts again from the shortest delay.
            Ok(Ended::Lost) => delays = policy.build(),
            Err(err) => tracing::warn!(error = %err, "redis subscriber unavailable"),
        }
        fanout.set_connected(false);
        first = false;
        counter!(RECONNECTS_TOTAL).increment(1);
        tokio::select! {
            _ = fanout.stop.cancelled() => return,
            _ = tokio::time::sleep(delays.next().unwrap_or(MAX_BACKOFF)) => {}
        }
    }
}

/// Reconnect delays, without end: doubling from 100 ms, each plus a random part of up to
/// itself (backon's jitter), so at most [`MAX_BACKOFF`].
fn reconnect_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(MAX_BACKOFF / 2)
        .with_jitter()
        .without_max_times()
}

/// Counts a message from another node that is dropped, and drops it.
fn dropped(reason: &'static str) -> Option<Inbound> {
    counter!(DROPPED_TOTAL, "reason" => reason).increment(1);
    None
}

enum Ended {
    /// The hub is gone.
    Shutdown,
    /// The connection dropped.
    Lost,
}

/// One subscriber connection: subscribe to the wanted channels, then hand messages to the hub
/// and follow changes of the wanted set until the connection drops.
async fn run_subscriber(
    client: &redis::Client,
    fanout: &RedisFanout,
    inbound: &mpsc::Sender<Inbound>,
    first: bool,
) -> Result<Ended, redis::RedisError> {
    let (mut sink, mut stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(NODES_CHANNEL).await?;
    let mut followed = Followed::new();
    if !follow(&mut sink, fanout, inbound, &mut followed).await? {
        return Ok(Ended::Shutdown);
    }
    fanout.set_connected(true);
    if !first {
        tracing::info!("redis fan-out reconnected; local sessions catch up from storage");
        if !hand_over(inbound, Inbound::Resync).await {
            return Ok(Ended::Shutdown);
        }
    }
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    tracing::warn!("redis fan-out connection lost");
                    return Ok(Ended::Lost);
                };
                let received = fanout.receive(
                    &followed,
                    message.get_channel_name(),
                    message.get_payload_bytes(),
                );
                if let Some(item) = received
                    && !hand_over(inbound, item).await
                {
                    return Ok(Ended::Shutdown);
                }
            }
            _ = fanout.changed.notified() => {
                if !follow(&mut sink, fanout, inbound, &mut followed).await? {
                    return Ok(Ended::Shutdown);
                }
            }
        }
    }
}

/// Subscribes to the wanted rooms not followed yet and unsubscribes from the followed rooms no
/// longer wanted (two set differences); then asks the hub to sync the new rooms with the other
/// nodes (on a fresh connection that is every room, which recovers presence after an outage).
/// False when the hub is gone.
async fn follow(
    sink: &mut redis::aio::PubSubSink,
    fanout: &RedisFanout,
    inbound: &mpsc::Sender<Inbound>,
    followed: &mut Followed,
) -> Result<bool, redis::RedisError> {
    let wanted = fanout.wanted_channels();
    let remove: Vec<String> = followed
        .keys()
        .filter(|c| !wanted.contains(*c))
        .cloned()
        .collect();
    let add: Vec<String> = wanted
        .into_iter()
        .filter(|c| !followed.contains_key(c))
        .collect();
    if !remove.is_empty() {
        sink.unsubscribe(&remove).await?;
        for channel in &remove {
            followed.remove(channel);
        }
    }
    if add.is_empty() {
        return Ok(true);
    }
    sink.subscribe(&add).await?;
    let mut rooms = Vec::with_capacity(add.len());
    for channel in add {
        if let Some(room) = room_of(&channel) {
            rooms.push(room.clone());
            followed.insert(channel, room);
        }
    }
    Ok(hand_over(inbound, Inbound::Followed(rooms)).await)
}

#[cfg(test)]
mod tests;
