//! Fan-out between nodes over Redis pub/sub.
//!
//! Each node subscribes only to the channels of rooms with local members
//! (`confab:{tenant}:{conversation}`) and publishes each locally originated event once. A message
//! is one header line (JSON: origin node, kind, seq, …) and the frame text, which other nodes
//! deliver as is; a node ignores its own publications. Order per conversation comes from the
//! seq: a session that sees a hole fills it from storage.
//!
//! Presence crosses nodes as control messages on the same room channels (header `t`): each
//! node publishes its own per-room transitions (`presence`); a node that subscribes to a room
//! asks it for a snapshot (`sync`, carrying its own users) and the others answer with theirs
//! (`snapshot`). Nodes beat on `confab:nodes` every [`BEAT`]; one silent for [`PEER_EXPIRY`] is
//! dropped and its users go offline where no other node has them. A resubscription after an
//! outage syncs every open room again.
//!
//! Redis loss never stops local rooms: publishes are dropped (counted), the subscriber
//! reconnects with backoff and resubscribes, and then every local subscriber is told to catch
//! up from storage (`Outbound::Resync`). `/ready` and `confab_fanout_connected` report outages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use confab_protocol::EventKind;
use futures_util::StreamExt;
use metrics::{counter, gauge};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::{Delivered, Ephemeral, Fanout, Hub};

pub const CONNECTED: &str = "confab_fanout_connected";
pub const PUBLISHED_TOTAL: &str = "confab_fanout_published_total";
pub const RECEIVED_TOTAL: &str = "confab_fanout_received_total";
pub const DROPPED_TOTAL: &str = "confab_fanout_dropped_total";
pub const RECONNECTS_TOTAL: &str = "confab_fanout_reconnects_total";

/// Messages waiting to be published before new ones are dropped.
const PUBLISH_QUEUE: usize = 16 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a node says it is alive.
pub const BEAT: Duration = Duration::from_secs(2);
/// How long a silent node counts as alive (three beats).
pub const PEER_EXPIRY: Duration = Duration::from_secs(6);
/// The channel every node subscribes to for heartbeats.
const NODES_CHANNEL: &str = "confab:nodes";

/// Why the fan-out could not start.
#[derive(Debug, thiserror::Error)]
#[error("redis fan-out: {0}")]
pub struct FanoutError(#[from] redis::RedisError);

/// The header line of a published message.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// Origin node.
    o: String,
    /// Durable event kind; absent for ephemeral frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<EventKind>,
    #[serde(default)]
    s: u64,
    /// Member concerned (member events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    /// User whose connections skip an ephemeral frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    /// A control message between nodes (absent for frames to deliver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<Control>,
    /// `presence`: whether `u` is now online on the origin node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    on: bool,
}

impl Header {
    fn control(origin: &str, control: Control) -> Header {
        Header {
            o: origin.to_owned(),
            k: None,
            s: 0,
            u: None,
            x: None,
            t: Some(control),
            on: false,
        }
    }
}

/// Node-to-node control messages; `sync` and `snapshot` carry a JSON array of user ids as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Control {
    /// The origin's first connection of `u` joined the room (`on`) or its last left.
    Presence,
    /// The origin opened the room: here are its users; answer with yours.
    Sync,
    /// Answer to `sync`: the origin's users in the room.
    Snapshot,
    /// The origin is alive.
    Beat,
}

fn channel(tenant: &str, conversation: &str) -> String {
    format!("confab:{tenant}:{conversation}")
}

/// The conversation of a channel name.
fn conversation_of(channel: &str) -> Option<&str> {
    let rest = channel.strip_prefix("confab:")?;
    rest.rsplit_once(':').map(|(_, conversation)| conversation)
}

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
}

impl RedisFanout {
    /// Connects to Redis, starts the publisher and subscriber tasks, and attaches to `hub`.
    /// Fails if Redis cannot be reached at start; later outages are survived.
    pub async fn start(
        url: &str,
        hub: &Arc<Hub>,
        shutdown: CancellationToken,
    ) -> Result<Arc<RedisFanout>, FanoutError> {
        let client = redis::Client::open(url)?;
        let publisher = client.get_connection_manager().await?;
        // Fail fast on a bad address or credentials for the subscriber too.
        drop(client.get_async_pubsub().await?);
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let fanout = Arc::new(RedisFanout {
            node: uuid::Uuid::new_v4().simple().to_string(),
            publish_tx,
            wanted: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            connected: AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
        });
        tokio::spawn(publish_loop(publisher, publish_rx, shutdown.clone()));
        tokio::spawn(beat_loop(
            Arc::downgrade(&fanout),
            Arc::downgrade(hub),
            shutdown.clone(),
        ));
        tokio::spawn(subscribe_loop(
            client,
            Arc::downgrade(&fanout),
            Arc::downgrade(hub),
            shutdown,
        ));
        hub.attach_fanout(fanout.clone());
        tracing::info!(node = %fanout.node, "redis fan-out started");
        Ok(fanout)
    }

    /// Whether the subscriber is connected (cross-node events flow).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
        gauge!(CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }

    fn enqueue(&self, channel: String, header: &Header, text: &str) {
        let Ok(mut payload) = serde_json::to_vec(header) else {
            return;
        };
        payload.push(b'\n');
        payload.extend_from_slice(text.as_bytes());
        if self.publish_tx.try_send((channel, payload)).is_err() {
            counter!(DROPPED_TOTAL, "reason" => "queue_full").increment(1);
        }
    }

    fn wanted_channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self
            .wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        channels.push(NODES_CHANNEL.to_owned());
        channels
    }

    /// Sends a control message carrying this node's users of a room.
    fn send_users(&self, channel: String, control: Control, users: &[String]) {
        let Ok(text) = serde_json::to_string(users) else {
            return;
        };
        self.enqueue(channel, &Header::control(&self.node, control), &text);
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
            o: self.node.clone(),
            k: Some(event.kind),
            s: event.seq,
            u: event.subject.clone(),
            x: None,
            t: None,
            on: false,
        };
        self.enqueue(channel(tenant, &event.conversation), &header, &event.text);
    }

    fn publish_ephemeral(&self, tenant: &str, frame: &Ephemeral, skip_user: Option<&str>) {
        let header = Header {
            o: self.node.clone(),
            k: None,
            s: 0,
            u: None,
            x: skip_user.map(str::to_owned),
            t: None,
            on: false,
        };
        self.enqueue(channel(tenant, &frame.conversation), &header, &frame.text);
    }

    fn publish_presence(&self, tenant: &str, conversation: &str, user: &str, online: bool) {
        let header = Header {
            u: Some(user.to_owned()),
            on: online,
            ..Header::control(&self.node, Control::Presence)
        };
        self.enqueue(channel(tenant, conversation), &header, "");
    }
}

/// Beats on [`NODES_CHANNEL`] and expires silent peers.
async fn beat_loop(fanout: Weak<RedisFanout>, hub: Weak<Hub>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(BEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let (Some(fanout), Some(hub)) = (fanout.upgrade(), hub.upgrade()) else {
            return;
        };
        fanout.enqueue(
            NODES_CHANNEL.to_owned(),
            &Header::control(&fanout.node, Control::Beat),
            "",
        );
        for node in fanout.expire_peers() {
            tracing::warn!(peer = %node, "fan-out peer silent; its users go offline");
            hub.remote_node_gone(&node);
        }
    }
}

async fn publish_loop(
    mut conn: redis::aio::ConnectionManager,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    shutdown: CancellationToken,
) {
    loop {
        let (channel, payload) = tokio::select! {
            _ = shutdown.cancelled() => return,
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
    fanout: Weak<RedisFanout>,
    hub: Weak<Hub>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let session = tokio::select! {
            _ = shutdown.cancelled() => return,
            session = run_subscriber(&client, &fanout, &hub, first, &shutdown) => session,
        };
        match session {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Lost) => backoff = Duration::from_millis(100),
            Err(err) => tracing::warn!(error = %err, "redis subscriber unavailable"),
        }
        let Some(fanout) = fanout.upgrade() else {
            return;
        };
        fanout.set_connected(false);
        drop(fanout);
        first = false;
        counter!(RECONNECTS_TOTAL).increment(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Ended {
    Shutdown,
    Lost,
}

/// One subscriber connection: subscribe to the wanted channels, then deliver messages and
/// follow changes of the wanted set until the connection drops.
async fn run_subscriber(
    client: &redis::Client,
    fanout: &Weak<RedisFanout>,
    hub: &Weak<Hub>,
    first: bool,
    shutdown: &CancellationToken,
) -> Result<Ended, redis::RedisError> {
    let (mut sink, mut stream) = client.get_async_pubsub().await?.split();
    let mut subscribed: Vec<String> = Vec::new();
    let Some(node) = fanout.upgrade().map(|f| f.node.clone()) else {
        return Ok(Ended::Shutdown);
    };
    sync_subscriptions(&mut sink, fanout, hub, &mut subscribed).await?;
    if let Some(f) = fanout.upgrade() {
        f.set_connected(true);
    }
    if !first {
        tracing::info!("redis fan-out reconnected; local sessions catch up from storage");
        if let Some(hub) = hub.upgrade() {
            hub.resync_all();
        }
    }
    loop {
        let changed = async {
            match fanout.upgrade() {
                Some(f) => f.changed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
            message = stream.next() => {
                let Some(message) = message else {
                    tracing::warn!("redis fan-out connection lost");
                    return Ok(Ended::Lost);
                };
                let Some(hub) = hub.upgrade() else {
                    return Ok(Ended::Shutdown);
                };
                let fanout = fanout.upgrade();
                deliver(&hub, fanout.as_deref(), &node, message.get_channel_name(), message.get_payload_bytes());
            }
            _ = changed => sync_subscriptions(&mut sink, fanout, hub, &mut subscribed).await?,
        }
    }
}

/// Follows the wanted set; after subscribing to a room, asks the other nodes for their users
/// there (on a fresh connection that is every room, which recovers presence after an outage).
async fn sync_subscriptions(
    sink: &mut redis::aio::PubSubSink,
    fanout: &Weak<RedisFanout>,
    hub: &Weak<Hub>,
    subscribed: &mut Vec<String>,
) -> Result<(), redis::RedisError> {
    let Some(wanted) = fanout.upgrade().map(|f| f.wanted_channels()) else {
        return Ok(());
    };
    let add: Vec<&String> = wanted.iter().filter(|c| !subscribed.contains(c)).collect();
    let remove: Vec<String> = subscribed
        .iter()
        .filter(|c| !wanted.contains(c))
        .cloned()
        .collect();
    if !add.is_empty() {
        sink.subscribe(&add).await?;
        if let (Some(fanout), Some(hub)) = (fanout.upgrade(), hub.upgrade()) {
            for channel in &add {
                if let Some(conversation) = conversation_of(channel) {
                    hub.with_local_online(conversation, |users| {
                        fanout.send_users((*channel).clone(), Control::Sync, &users);
                    });
                }
            }
        }
    }
    if !remove.is_empty() {
        sink.unsubscribe(&remove).await?;
    }
    *subscribed = wanted;
    Ok(())
}

/// Delivers a message from another node to this node's subscribers (or applies its control
/// message).
fn deliver(hub: &Hub, fanout: Option<&RedisFanout>, node: &str, channel: &str, payload: &[u8]) {
    let Some(split) = payload.iter().position(|b| *b == b'\n') else {
        counter!(DROPPED_TOTAL, "reason" => "malformed").increment(1);
        return;
    };
    let (Ok(header), Ok(text)) = (
        serde_json::from_slice::<Header>(&payload[..split]),
        std::str::from_utf8(&payload[split + 1..]),
    ) else {
        counter!(DROPPED_TOTAL, "reason" => "malformed").increment(1);
        return;
    };
    if header.o == node {
        return;
    }
    counter!(RECEIVED_TOTAL).increment(1);
    if let Some(control) = header.t {
        // Control messages (beats, presence) keep a peer alive: a node's users are recorded
        // here only from them, so event deliveries need not touch the peer table.
        if let Some(fanout) = fanout {
            fanout.heard_from(&header.o);
        }
        if let Some(conversation) = conversation_of(channel) {
            apply_control(hub, fanout, &header, control, channel, conversation, text);
        }
        return;
    }
    let Some(conversation) = conversation_of(channel) else {
        return;
    };
    let conversation = hub.room_key(conversation);
    let text = Utf8Bytes::from(text);
    match header.k {
        Some(kind) => hub.deliver_event(Arc::new(Delivered {
            conversation,
            seq: header.s,
            kind,
            subject: header.u,
            text,
        })),
        None => hub.deliver_ephemeral(
            Arc::new(Ephemeral { conversation, text }),
            header.x.as_deref(),
        ),
    }
}

/// Applies another node's presence control message to a room open here.
fn apply_control(
    hub: &Hub,
    fanout: Option<&RedisFanout>,
    header: &Header,
    control: Control,
    channel: &str,
    conversation: &str,
    text: &str,
) {
    match control {
        Control::Beat => {}
        Control::Presence => {
            if let Some(user) = header.u.as_deref() {
                hub.remote_presence(conversation, &header.o, user, header.on);
            }
        }
        Control::Sync | Control::Snapshot => {
            let Ok(users) = serde_json::from_str::<Vec<String>>(text) else {
                counter!(DROPPED_TOTAL, "reason" => "malformed").increment(1);
                return;
            };
            hub.remote_snapshot(conversation, &header.o, &users);
            if let (Control::Sync, Some(fanout)) = (control, fanout) {
                hub.with_local_online(conversation, |mine| {
                    fanout.send_users(channel.to_owned(), Control::Snapshot, &mine);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_tenant_and_conversation() {
        let name = channel("acme", "c1");
        assert_eq!(name, "confab:acme:c1");
        assert_eq!(conversation_of(&name), Some("c1"));
        assert_eq!(conversation_of("other:x"), None);
    }

    #[test]
    fn malformed_payloads_are_dropped() {
        let hub = Hub::new();
        deliver(&hub, None, "me", "confab:t:c", b"no newline");
        deliver(&hub, None, "me", "confab:t:c", b"{bad json}\n{}");
        deliver(&hub, None, "me", "confab:t:c", b"{\"o\":\"x\"}\n\xff\xfe");
        deliver(
            &hub,
            None,
            "me",
            "confab:t:c",
            b"{\"o\":\"x\",\"t\":\"sync\"}\nnot json",
        );
    }
}
