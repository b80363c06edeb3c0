//! Fan-out between nodes over Redis pub/sub, on one Redis server or sharded over several.
//!
//! Each node subscribes only to the channels of rooms with local members (or that had some
//! until [`crate::hub::ROOM_LINGER`] ago) (`confab:{tenant}:{conversation}`) and publishes each locally originated event once. A message
//! is one header line (JSON, [`wire::Header`]) and the frame text, which other nodes deliver as
//! is; a node ignores its own publications. Order per conversation comes from the seq: a session
//! that sees a hole fills it from storage.
//!
//! Shards: with several Redis URLs, each room's channel lives on one server,
//! [`shard::shard_of`] its tenant and conversation, and the node keeps one publisher and one
//! subscriber connection per server. Everything about a room (its events, ephemeral frames,
//! presence, snapshots) is on the room's channel, so it follows the room's shard. What is not
//! about one room is spread deliberately: heartbeats go to `confab:nodes` on every shard (a
//! peer is alive while it is heard on any of them, so losing one shard expires nobody), and a
//! user's nudge goes to `confab:nodes` on the shard of that user, which every node subscribes
//! to. Losing a shard therefore stops only its rooms' cross-node traffic and its users' nudges.
//!
//! Presence crosses nodes as control messages on the room channels: a node that subscribes to a
//! room asks it for a snapshot (`sync`, carrying its own users), and from then on publishes its
//! own per-room transitions (`presence`); the others answer with theirs to the asker alone, on
//! its own channel ([`wire::inbox`], on the room's shard so that order holds), all the syncs of
//! one asker read together in one `snapshots` message per shard. Nodes beat on
//! `confab:nodes` every [`BEAT`]; one silent for [`PEER_EXPIRY`] (on the wall clock, and on
//! this node's own reading of the channel, see [`liveness`]) is dropped and its users go
//! offline where no other node has them. A resubscription after an outage syncs that shard's
//! open rooms again.
//!
//! Redis loss never stops local rooms: publishes to a lost shard are dropped (counted), its
//! subscriber reconnects with backoff and resubscribes, and then the local subscribers of its
//! rooms are told to catch up from storage ([`Inbound::Resync`]). `/ready` and
//! `confab_fanout_connected{shard}` report outages per shard. A shard unreachable at start is
//! the same outage from the first moment: the node starts, and connects it in the background
//! ([`connect`]).

mod beats;
mod connect;
mod liveness;
mod shard;
mod wire;

use backon::BackoffBuilder;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use metrics::counter;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tungstenite::Utf8Bytes;

use super::{Fanout, INBOUND_QUEUE, Inbound, Link, RoomUsers, UsersTo};
use crate::hub::{Delivered, Ephemeral};
use crate::metrics::FANOUT_INBOUND_WAITS_TOTAL as INBOUND_WAITS_TOTAL;

use liveness::Liveness;
pub use shard::shard_of;
use shard::{PUBLISH_QUEUE, Shard};
pub use wire::WIRE_VERSION;
use wire::{Header, MessageType, NODES_CHANNEL, channel, inbox, message, room_of, split};

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a node says it is alive.
pub const BEAT: Duration = Duration::from_secs(2);
/// How long a silent node counts as alive (three beats).
pub const PEER_EXPIRY: Duration = Duration::from_secs(6);

/// Why the fan-out could not start: a shard's URL is unusable or its Redis refused the node (its
/// position in `hub` and its address; a password in the URL is never shown). An unreachable
/// shard is no error: it is connected in the background.
#[derive(Debug, thiserror::Error)]
#[error("redis fan-out, shard {shard} ({address}): {source}")]
pub struct FanoutError {
    shard: usize,
    address: String,
    #[source]
    source: redis::RedisError,
}

/// The tenant and conversation of the rooms a subscriber connection follows: channel name →
/// (tenant, conversation), shared with every message received on it.
type Followed = HashMap<String, (Arc<str>, Arc<str>)>;

/// The Redis fan-out of one node.
pub struct RedisFanout {
    node: String,
    /// This node's own channel ([`wire::inbox`]): answers to its `sync`s.
    inbox: String,
    /// One per Redis server, in the configured order.
    shards: Vec<Shard>,
    /// Other nodes heard from (on any shard), and how far this node has read.
    liveness: Mutex<Liveness>,
    /// An own beat came back: the beat loop looks for silent peers at once (the beat it has
    /// just sent is not back yet when it looks after sending).
    own_beat_back: tokio::sync::Notify,
    /// The runtime's last sign of life, as a beat stamp ([`Liveness::beat_stamp`]): the beat
    /// threads beat only while it is recent ([`beats`]).
    runtime_pulse: AtomicU64,
    /// Stops the background tasks ([`Fanout::close`]).
    stop: CancellationToken,
}

impl RedisFanout {
    fn new(node: String, shards: Vec<Shard>) -> RedisFanout {
        RedisFanout {
            inbox: inbox(&node),
            node,
            shards,
            liveness: Mutex::new(Liveness::new(Instant::now())),
            own_beat_back: tokio::sync::Notify::new(),
            runtime_pulse: AtomicU64::new(1),
            stop: CancellationToken::new(),
        }
    }

    /// Notes that the runtime is alive at beat stamp `stamp`.
    fn runtime_pulse(&self, stamp: u64) {
        self.runtime_pulse.fetch_max(stamp, Ordering::Relaxed);
    }

    /// Whether the runtime showed life within [`liveness::STALL_LIMIT`] of beat stamp `stamp`.
    fn runtime_alive(&self, stamp: u64) -> bool {
        let pulse = self.runtime_pulse.load(Ordering::Relaxed);
        let limit = u64::try_from(liveness::STALL_LIMIT.as_millis()).unwrap_or(u64::MAX);
        pulse > 0 && stamp.saturating_sub(pulse) <= limit
    }

    /// Tries every shard's Redis (at once) and starts the publisher and subscriber tasks of
    /// each, and the heartbeat. A shard that cannot be reached is connected in the background,
    /// its conversations degraded meanwhile as after a loss at runtime (`/ready` names it; with
    /// every shard down it answers 503); fails only on an unusable URL or a server that refuses
    /// the node ([`connect`]). The tasks stop on [`Fanout::close`], or when the link's inbound
    /// receiver is dropped.
    pub async fn start(urls: &[String]) -> Result<Link, FanoutError> {
        let contacts = futures_util::future::join_all(
            urls.iter()
                .enumerate()
                .map(|(index, url)| connect::first_contact(index, url)),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let mut shards = Vec::with_capacity(contacts.len());
        let mut publish_rxs = Vec::with_capacity(contacts.len());
        for index in 0..contacts.len() {
            let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
            shards.push(Shard::new(index, publish_tx));
            publish_rxs.push(publish_rx);
        }
        let node = uuid::Uuid::new_v4().simple().to_string();
        let fanout = Arc::new(RedisFanout::new(node, shards));
        let reachable = contacts.iter().filter(|c| c.publisher.is_some()).count();
        for (index, (contact, publish_rx)) in contacts.into_iter().zip(publish_rxs).enumerate() {
            let connect::FirstContact { client, publisher } = contact;
            tokio::spawn(connect::publish_loop(
                fanout.clone(),
                index,
                client.clone(),
                publisher,
                publish_rx,
                inbound_tx.clone(),
            ));
            if let Err(err) = beats::spawn(fanout.clone(), index, client.clone(), BEAT) {
                tracing::error!(shard = index, error = %err, "cannot start the beat thread; the other nodes will take this one for dead");
            }
            tokio::spawn(subscribe_loop(
                client,
                fanout.clone(),
                index,
                inbound_tx.clone(),
            ));
        }
        tokio::spawn(beat_loop(fanout.clone(), inbound_tx));
        tracing::info!(
            node = %fanout.node,
            shards = fanout.shards.len(),
            reachable,
            "redis fan-out started"
        );
        Ok(Link {
            fanout,
            inbound: inbound_rx,
        })
    }

    /// The shard of a room (or, for nudges, of a user) of `tenant`.
    fn shard(&self, tenant: &str, key: &str) -> &Shard {
        &self.shards[shard_of(tenant, key, self.shards.len())]
    }

    fn enqueue(&self, shard: &Shard, channel: String, header: &Header<'_>, text: &str) {
        let payload = message(header, text);
        if let Err(err) = shard.publish_tx.try_send((channel, payload)) {
            let (channel, payload) = match err {
                TrySendError::Full(item) | TrySendError::Closed(item) => item,
            };
            shard.lost("queue_full", [(channel.as_str(), payload.as_slice())]);
        }
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `node` is alive.
    fn heard_from(&self, node: &str) {
        if self.liveness().heard(node, Instant::now()) {
            tracing::info!(peer = node, "fan-out peer appeared");
        }
    }

    /// One of this node's own messages came back: a beat says how far it has read.
    fn heard_self(&self, header: &Header<'_>) {
        if header.message == MessageType::Beat {
            self.liveness().heard_own_beat(header.seq, Instant::now());
            self.own_beat_back.notify_one();
        }
    }

    /// Forgets the nodes silent for longer than [`PEER_EXPIRY`] (see [`liveness`]); returns
    /// them.
    fn expire_peers(&self) -> Vec<String> {
        let subscribed = self.shards.iter().any(Shard::is_connected);
        let now = Instant::now();
        let mut liveness = self.liveness();
        let described: Vec<_> = liveness
            .expire_candidates(now)
            .map(|node| (node.to_owned(), liveness.describe(node, now)))
            .collect();
        let expired = liveness.expire(now, subscribed);
        drop(liveness);
        for node in &expired {
            let [heard, own_sent, own_heard] = described
                .iter()
                .find(|(candidate, _)| candidate == node)
                .map_or([None; 3], |(_, described)| *described);
            tracing::warn!(
                peer = %node,
                heard_ago = ?heard,
                own_beat_sent_ago = ?own_sent,
                own_beat_heard_ago = ?own_heard,
                subscribed,
                "fan-out peer silent; its users go offline"
            );
        }
        expired
    }

    /// The channel of the room a message is about: the channel it came on, or for an answer on
    /// this node's own channel, the room it names. `None` for anything else on the own channel.
    fn room_channel<'m>(&self, header: &'m Header<'_>, channel: &'m str) -> Option<&'m str> {
        if channel != self.inbox {
            return Some(channel);
        }
        match &header.room {
            Some(room) if header.message == MessageType::Snapshot => Some(room.as_ref()),
            _ => None,
        }
    }

    /// Reads a message from another node, received on `shard`: what the hub must do with it,
    /// if anything.
    fn receive(
        &self,
        shard: &Shard,
        followed: &Followed,
        channel: &str,
        payload: &[u8],
    ) -> Option<Inbound> {
        let dropped = |reason| {
            shard.dropped(reason);
            None
        };
        let (header, text) = parse(shard, payload)?;
        if header.node == self.node {
            self.heard_self(&header);
            return None;
        }
        shard.metrics.received.increment(1);
        if !matches!(header.message, MessageType::Event | MessageType::Ephemeral) {
            // Control messages (beats, presence) keep a peer alive: a node's users are recorded
            // here only from them, so event deliveries need not touch the peer table.
            self.heard_from(&header.node);
        }
        if header.message == MessageType::Beat {
            shard.check_beat(&header.node, header.shard, header.shards, self.shards.len());
            return None;
        }
        if header.message == MessageType::User {
            return nudge(shard, header, text);
        }
        if header.message == MessageType::Snapshots {
            return self.receive_answers(shard, followed, &header, channel, text);
        }
        let Some(room) = self.room_channel(&header, channel) else {
            return dropped("malformed");
        };
        // Not (or no longer) followed: the nodes' channel, or a room just closed here.
        let (tenant, conversation) = followed.get(room)?.clone();
        let node = || header.node.clone().into_owned();
        match header.message {
            MessageType::Beat | MessageType::User | MessageType::Snapshots => None,
            MessageType::Resync => Some(Inbound::Missed(vec![(tenant, conversation)])),
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

impl RedisFanout {
    /// Another node's answers to this node's syncs, on this node's own channel: the rooms
    /// still followed, each with its users.
    fn receive_answers(
        &self,
        shard: &Shard,
        followed: &Followed,
        header: &Header<'_>,
        channel: &str,
        text: &str,
    ) -> Option<Inbound> {
        let rooms = match wire::read_snapshots(text) {
            Some(rooms) if channel == self.inbox => rooms,
            _ => {
                shard.dropped("malformed");
                return None;
            }
        };
        let rooms: Vec<_> = rooms
            .into_iter()
            .filter_map(|(room, users)| {
                // Rooms closed here since the sync are left out.
                let (tenant, conversation) = followed.get(&room)?.clone();
                Some((tenant, conversation, users))
            })
            .collect();
        (!rooms.is_empty()).then(|| Inbound::Answers {
            node: header.node.clone().into_owned(),
            rooms,
        })
    }
}

impl Fanout for RedisFanout {
    fn open_room(&self, tenant: &str, conversation: &str) {
        let shard = self.shard(tenant, conversation);
        shard
            .wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open(channel(tenant, conversation));
        shard.changed.notify_one();
    }

    fn close_room(&self, tenant: &str, conversation: &str) {
        let shard = self.shard(tenant, conversation);
        shard
            .wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close(&channel(tenant, conversation));
        shard.changed.notify_one();
    }

    fn publish_event(&self, tenant: &str, event: &Delivered) {
        let header = Header {
            kind: Some(event.kind),
            seq: event.seq,
            user: event.subject.as_deref().map(Cow::Borrowed),
            ..Header::new(&self.node, MessageType::Event)
        };
        let shard = self.shard(tenant, &event.conversation);
        let channel = channel(tenant, &event.conversation);
        self.enqueue(shard, channel, &header, &event.text);
    }

    fn publish_ephemeral(&self, tenant: &str, frame: &Ephemeral, skip_user: Option<&str>) {
        let header = Header {
            skip_user: skip_user.map(Cow::Borrowed),
            ..Header::new(&self.node, MessageType::Ephemeral)
        };
        let shard = self.shard(tenant, &frame.conversation);
        let channel = channel(tenant, &frame.conversation);
        self.enqueue(shard, channel, &header, &frame.text);
    }

    fn publish_presence(&self, tenant: &str, conversation: &str, user: &str, online: bool) {
        let header = Header {
            user: Some(Cow::Borrowed(user)),
            online,
            ..Header::new(&self.node, MessageType::Presence)
        };
        let shard = self.shard(tenant, conversation);
        self.enqueue(shard, channel(tenant, conversation), &header, "");
    }

    fn publish_users(&self, tenant: &str, conversation: &str, users: &[String], to: UsersTo<'_>) {
        let Ok(text) = serde_json::to_string(users) else {
            return;
        };
        // Both on the room's shard: an answer cannot overtake this node's presence changes of
        // the room published after it (one publisher connection, one subscriber connection).
        let shard = self.shard(tenant, conversation);
        let room = channel(tenant, conversation);
        match to {
            UsersTo::All => {
                let header = Header::new(&self.node, MessageType::Sync);
                self.enqueue(shard, room, &header, &text);
            }
            UsersTo::Node(node) => {
                let header = Header {
                    room: Some(Cow::Owned(room)),
                    ..Header::new(&self.node, MessageType::Snapshot)
                };
                self.enqueue(shard, inbox(node), &header, &text);
            }
        }
    }

    fn publish_answers(&self, node: &str, answers: &[RoomUsers<'_>]) {
        // One message per shard, on the shard of every room it names: none of them can
        // overtake this node's presence changes of its rooms published after it (the hub holds
        // the rooms' locks meanwhile).
        let mut by_shard: Vec<Vec<(String, &[String])>> = vec![Vec::new(); self.shards.len()];
        for answer in answers {
            let index = shard_of(answer.tenant, answer.conversation, self.shards.len());
            if let Some(rooms) = by_shard.get_mut(index) {
                rooms.push((channel(answer.tenant, answer.conversation), &answer.users));
            }
        }
        let to = inbox(node);
        let header = Header::new(&self.node, MessageType::Snapshots);
        for (shard, rooms) in self.shards.iter().zip(by_shard) {
            if rooms.is_empty() {
                continue;
            }
            self.enqueue(shard, to.clone(), &header, &wire::snapshots_text(&rooms));
        }
    }

    fn publish_user(&self, tenant: &str, user: &str) {
        let header = Header {
            user: Some(Cow::Borrowed(user)),
            ..Header::new(&self.node, MessageType::User)
        };
        // Every node follows the nodes' channel of every shard: the user's shard spreads the
        // nudges, and losing it delays only its users' (the resync after it returns nudges all).
        let shard = self.shard(tenant, user);
        self.enqueue(shard, NODES_CHANNEL.to_owned(), &header, tenant);
    }

    fn links(&self) -> Vec<bool> {
        self.shards.iter().map(Shard::is_connected).collect()
    }

    fn close(&self) {
        self.stop.cancel();
    }
}

/// A user nudge received on `shard` (the tenant in `text`); `None` (counted) without its user.
fn nudge(shard: &Shard, header: Header<'_>, text: &str) -> Option<Inbound> {
    let Some(user) = header.user else {
        shard.dropped("malformed");
        return None;
    };
    Some(Inbound::User {
        tenant: Arc::from(text),
        user: user.into_owned(),
    })
}

/// The header and text of a message received on `shard`; `None` (counted) when it is malformed
/// or of another wire version.
fn parse<'p>(shard: &Shard, payload: &'p [u8]) -> Option<(Header<'p>, &'p str)> {
    let Some((header, text)) = split(payload) else {
        shard.dropped("malformed");
        return None;
    };
    if header.v != WIRE_VERSION {
        shard.dropped("version");
        return None;
    }
    Some((header, text))
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

/// Stamps the runtime's pulse for the beat threads ([`beats`]) and expires silent peers, every
/// beat and whenever an own beat comes back.
async fn beat_loop(fanout: Arc<RedisFanout>, inbound: mpsc::Sender<Inbound>) {
    let mut ticker = tokio::time::interval(BEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = fanout.stop.cancelled() => return,
            _ = inbound.closed() => return,
            _ = ticker.tick() => {
                let stamp = fanout.liveness().beat_stamp(Instant::now());
                fanout.runtime_pulse(stamp);
            }
            () = fanout.own_beat_back.notified() => {}
        }
        for node in fanout.expire_peers() {
            if !hand_over(&inbound, Inbound::NodeGone(node)).await {
                return;
            }
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    fanout: Arc<RedisFanout>,
    index: usize,
    inbound: mpsc::Sender<Inbound>,
) {
    let shard = &fanout.shards[index];
    let policy = connect::reconnect_policy();
    let mut delays = policy.build();
    let mut first = true;
    loop {
        let session = tokio::select! {
            _ = fanout.stop.cancelled() => return,
            _ = inbound.closed() => return,
            session = run_subscriber(&client, &fanout, shard, &inbound, first) => session,
        };
        match session {
            Ok(Ended::Shutdown) => return,
            // It was up: the next outage starts again from the shortest delay.
            Ok(Ended::Lost) => delays = policy.build(),
            Err(err) => tracing::warn!(shard = index, error = %err, "redis subscriber unavailable"),
        }
        shard.set_connected(false);
        first = false;
        shard.metrics.reconnects.increment(1);
        tokio::select! {
            _ = fanout.stop.cancelled() => return,
            _ = tokio::time::sleep(delays.next().unwrap_or(MAX_BACKOFF)) => {}
        }
    }
}

enum Ended {
    /// The hub is gone.
    Shutdown,
    /// The connection dropped.
    Lost,
}

/// One subscriber connection to one shard: subscribe to the shard's wanted channels, then hand
/// messages to the hub and follow changes of the wanted set until the connection drops.
async fn run_subscriber(
    client: &redis::Client,
    fanout: &RedisFanout,
    shard: &Shard,
    inbound: &mpsc::Sender<Inbound>,
    first: bool,
) -> Result<Ended, redis::RedisError> {
    let (mut sink, mut stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(&[NODES_CHANNEL, fanout.inbox.as_str()])
        .await?;
    let mut followed = Followed::new();
    if !follow(&mut sink, shard, inbound, &mut followed, true).await? {
        return Ok(Ended::Shutdown);
    }
    shard.set_connected(true);
    if !first {
        tracing::info!(
            shard = shard.index,
            rooms = followed.len(),
            "redis fan-out reconnected; the shard's local sessions catch up from storage"
        );
        // Only this shard's rooms can have missed events; they are the rooms it follows now
        // (including those opened during the outage, whose joins read storage before it).
        let rooms = followed.values().cloned().collect();
        if !hand_over(inbound, Inbound::Resync(rooms)).await {
            return Ok(Ended::Shutdown);
        }
    }
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    tracing::warn!(shard = shard.index, "redis fan-out connection lost");
                    return Ok(Ended::Lost);
                };
                let received = fanout.receive(
                    shard,
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
            _ = shard.changed.notified() => {
                if !follow(&mut sink, shard, inbound, &mut followed, false).await? {
                    return Ok(Ended::Shutdown);
                }
            }
        }
    }
}

/// Subscribes to the rooms opened on the shard and not followed yet, and unsubscribes from the
/// followed rooms no longer wanted; on a fresh connection (`all`) compares the whole wanted set
/// instead. Then asks the hub to sync the new rooms with the other nodes (on a fresh connection
/// that is every room of the shard, which recovers presence after an outage), and the rooms
/// opened again here while still followed (closed and opened before this looked: a new room,
/// whose presence the other nodes have yet to learn). Costs what changed, not the number of
/// rooms followed. False when the hub is gone.
async fn follow(
    sink: &mut redis::aio::PubSubSink,
    shard: &Shard,
    inbound: &mpsc::Sender<Inbound>,
    followed: &mut Followed,
    all: bool,
) -> Result<bool, redis::RedisError> {
    let changes = shard.take_changes(all);
    let mut remove: Vec<String> = changes
        .closed
        .into_iter()
        .filter(|c| followed.contains_key(c))
        .collect();
    let mut add: Vec<String> = Vec::new();
    let mut rooms: Vec<(Arc<str>, Arc<str>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if let Some(wanted) = changes.all {
        let wanted: std::collections::HashSet<String> = wanted.into_iter().collect();
        // After the change log overflowed, any room still followed may have been closed and
        // opened again unseen: sync them all, as after a reconnect. (On a fresh connection
        // nothing is followed yet.)
        for (channel, room) in followed.iter().filter(|(c, _)| wanted.contains(*c)) {
            seen.insert(channel.clone());
            rooms.push(room.clone());
        }
        remove = followed
            .keys()
            .filter(|c| !wanted.contains(*c))
            .cloned()
            .collect();
        add = wanted
            .into_iter()
            .filter(|c| !followed.contains_key(c))
            .collect();
        seen.extend(add.iter().cloned());
    }
    for channel in changes.opened {
        if !seen.insert(channel.clone()) {
            continue;
        }
        match followed.get(&channel) {
            Some(room) => rooms.push(room.clone()),
            None => add.push(channel),
        }
    }
    remove.sort_unstable();
    remove.dedup();
    if !remove.is_empty() {
        sink.unsubscribe(&remove).await?;
        for channel in &remove {
            followed.remove(channel);
        }
    }
    if add.is_empty() && rooms.is_empty() {
        return Ok(true);
    }
    if !add.is_empty() {
        sink.subscribe(&add).await?;
    }
    rooms.reserve(add.len());
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
