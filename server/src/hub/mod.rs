//! The in-memory room hub: which connections are joined to which conversation, and fan-out.
//!
//! Each room holds its subscribers; publishing an event renders its frame once (or takes it
//! rendered from the [`Tee`](crate::events::Tee)) and pushes one `Arc` of that text per
//! recipient into each connection's bounded queue with `try_send`. A full queue never blocks the room: that connection is marked as a
//! slow consumer and its session closes it (the client resumes with `since`).
//!
//! The hub is the storage [`EventSink`] (or the [`RenderedSink`] behind the tee): the store hands
//! it every committed durable event in seq order, so live delivery order equals seq order per
//! conversation.
//!
//! Presence: each room counts its local connections per user and remembers which other nodes
//! report each user online (fed by the fan-out). A user is online in a conversation while any
//! of those says so; `presence` frames go out when that union flips, under the room's lock so
//! that one user's online/offline frames never overtake each other. The remote state lives in
//! the room, so it is dropped with it.
//!
//! Rooms are keyed by tenant and conversation ([`room`]: a room's key, its connections and its
//! presence), so rooms of two tenants never meet; a session subscribes only after the store said
//! its user is a member.
//!
//! Other nodes: a clustered hub owns its [`Fanout`] (built first, see [`crate::fanout`]), tells
//! it about rooms, events and presence, and applies what it hands back (events of other nodes,
//! their presence, resyncs) in one task, in order.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::fanout::{Fanout, Inbound, Link};
use crate::outbox::{Defer, Outbox, PushError, WakeBatch};
use axum::extract::ws::Utf8Bytes;
use confab_protocol::EventKind;
use confab_storage::{EventSink, StoredEvent};
use dashmap::DashMap;

use crate::events::{Rendered, RenderedSink, render_all};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

mod room;

use room::{Members, Room, RoomId, RoomKey};

/// A durable event ready to send: its position and its shared frame text.
#[derive(Debug)]
pub struct Delivered {
    pub conversation: Arc<str>,
    pub seq: u64,
    pub kind: EventKind,
    pub subject: Option<String>,
    pub text: Utf8Bytes,
}

/// An ephemeral frame (typing, read) for a conversation.
#[derive(Debug)]
pub struct Ephemeral {
    pub conversation: Arc<str>,
    pub text: Utf8Bytes,
}

/// One item of a connection's outbound queue ([`Outbox`]): two words, so that a queued burst
/// stays small.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A durable event (deduplicated by seq in the session).
    Event(Arc<Delivered>),
    /// An ephemeral frame, never replayed.
    Ephemeral(Arc<Ephemeral>),
    /// Events of this conversation may have been missed (fan-out outage): catch up from
    /// storage.
    Resync(Arc<str>),
}

/// A connection's handle, as the hub keeps it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub conn: u64,
    pub user: Arc<str>,
    /// The connection's queue and signals.
    pub outbox: Arc<Outbox>,
}

impl Subscriber {
    /// Queues an item, waking the session now, or (with `defer`, for a busy connection) at the
    /// write delay's next tick.
    fn push(&self, item: Outbound, defer: Option<Defer<'_>>) -> Result<(), PushError> {
        match defer {
            Some(defer) => self.outbox.push_deferred(item, defer),
            None => self.outbox.push(item),
        }
    }
}

/// The room hub.
#[derive(Debug)]
pub struct Hub {
    rooms: DashMap<RoomKey, Arc<Room>, RandomState>,
    next_conn: AtomicU64,
    /// The other nodes, when clustered.
    fanout: Option<Arc<dyn Fanout>>,
    /// With a write delay: the sessions to wake on its next tick.
    wakes: OnceLock<Arc<WakeBatch>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            rooms: DashMap::with_hasher(RandomState::new()),
            next_conn: AtomicU64::new(1),
            fanout: None,
            wakes: OnceLock::new(),
        }
    }
}

impl Hub {
    /// A hub for one node (no fan-out).
    pub fn new() -> Self {
        Hub::default()
    }

    /// A hub connected to the other nodes through `link` (none for one node). It owns the
    /// fan-out and drains its inbound channel in a task of its own, which ends when the fan-out
    /// stops ([`Hub::close`]).
    pub fn start(link: Option<Link>) -> Arc<Hub> {
        let Some(Link { fanout, inbound }) = link else {
            return Arc::new(Hub::new());
        };
        let hub = Arc::new(Hub {
            fanout: Some(fanout),
            ..Hub::default()
        });
        tokio::spawn(inbound_loop(hub.clone(), inbound));
        hub
    }

    /// The fan-out to other nodes, when clustered (its health is part of `/ready`).
    pub fn fanout(&self) -> Option<&dyn Fanout> {
        self.fanout.as_deref()
    }

    /// Stops the fan-out (the last step of shutdown, once no session is left to deliver to).
    pub fn close(&self) {
        if let Some(fanout) = &self.fanout {
            fanout.close();
        }
    }

    /// Holds back the wake of a busy session (one woken less than `delay` ago) until the next
    /// tick, every `delay`, so that a connection's deliveries of that window go out in one
    /// write: far fewer writes (and wake-ups) when each connection gets several messages per
    /// `delay`, for up to `delay` of latency. A delivery to a connection quiet for `delay` goes
    /// out at once; presence frames, resyncs, kicks and a session's replies are never delayed.
    /// Starts the tick task, which releases the last batch and stops on `shutdown`. Set once,
    /// before serving; a zero delay changes nothing.
    pub fn start_write_delay(&self, delay: Duration, shutdown: CancellationToken) {
        if delay.is_zero() {
            return;
        }
        let wakes = Arc::new(WakeBatch::new(delay));
        if self.wakes.set(wakes.clone()).is_err() {
            tracing::warn!("write delay already started; ignoring the second one");
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + delay, delay);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => m::write_delay_wakes(wakes.release()),
                }
            }
            // No more ticks: pushes from now on wake their session at once.
            m::write_delay_wakes(wakes.close());
        });
    }

    fn wakes(&self) -> Option<&WakeBatch> {
        self.wakes.get().map(|w| &**w)
    }

    /// How this moment's deliveries wake their sessions: `None` at once, else deferred.
    fn defer(&self) -> Option<Defer<'_>> {
        self.wakes().map(WakeBatch::defer_now)
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A tenant's conversation id as the hub shares it: the room's own `Arc<str>` when the room
    /// is open here (no allocation), else a new one.
    pub fn room_key(&self, tenant: &str, conversation: &str) -> Arc<str> {
        match self.room(tenant, conversation) {
            Some((key, _)) => key.conversation,
            None => Arc::from(conversation),
        }
    }

    /// Adds a subscriber to the room of a tenant's conversation (replacing an earlier entry of
    /// the same connection), opening the room if needed. Returns whether it was new. The caller
    /// has checked that the subscriber's user is a member of the conversation.
    pub fn subscribe(
        &self,
        tenant: &Arc<str>,
        conversation: &Arc<str>,
        subscriber: Subscriber,
    ) -> bool {
        let key = RoomKey {
            tenant: tenant.clone(),
            conversation: conversation.clone(),
        };
        let room = self
            .rooms
            .entry(key)
            .or_insert_with(|| {
                if let Some(fanout) = self.fanout.as_ref() {
                    fanout.open_room(tenant, conversation);
                }
                Arc::default()
            })
            .clone();
        let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = members
            .subscribers
            .iter_mut()
            .find(|s| s.conn == subscriber.conn)
        {
            *existing = subscriber;
            return false;
        }
        let user = subscriber.user.clone();
        let conn = subscriber.conn;
        members.subscribers.push(subscriber);
        m::room_joined(1.0);
        if members.add_local(&user) {
            self.local_presence(&members, tenant, conversation, &user, true, Some(conn));
        }
        true
    }

    /// This node's first connection of `user` joined the room, or its last left: tells the
    /// other nodes, and the local connections unless another node already had the user online.
    fn local_presence(
        &self,
        members: &Members,
        tenant: &str,
        conversation: &Arc<str>,
        user: &str,
        online: bool,
        skip_conn: Option<u64>,
    ) {
        if let Some(fanout) = self.fanout.as_ref() {
            fanout.publish_presence(tenant, conversation, user, online);
        }
        if !members.remote.contains_key(user) {
            members.announce(conversation, user, online, skip_conn);
        }
    }

    /// Removes a connection from a room; drops the room when it empties.
    pub fn unsubscribe(&self, tenant: &str, conversation: &str, conn: u64) {
        let Some((key, room)) = self.room(tenant, conversation) else {
            return;
        };
        let now_empty = {
            let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
            if let Some(index) = members.subscribers.iter().position(|s| s.conn == conn) {
                let gone = members.subscribers.remove(index);
                m::room_joined(-1.0);
                if members.remove_local(&gone.user) {
                    let conversation = &key.conversation;
                    self.local_presence(&members, tenant, conversation, &gone.user, false, None);
                }
            }
            members.subscribers.is_empty()
        };
        if now_empty {
            // Re-check under the map's entry lock: a join may have raced in.
            let removed = self.rooms.remove_if(&key as &dyn RoomId, |_, room| {
                room.members
                    .read()
                    .map(|m| m.subscribers.is_empty())
                    .unwrap_or(false)
            });
            if let (Some((key, _)), Some(fanout)) = (removed, self.fanout.as_ref()) {
                fanout.close_room(&key.tenant, &key.conversation);
            }
        }
    }

    /// Number of rooms with at least one local subscriber.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Users online in a tenant's conversation, here or on other nodes, sorted.
    pub fn online(&self, tenant: &str, conversation: &str) -> Vec<String> {
        let Some((_, room)) = self.room(tenant, conversation) else {
            return Vec::new();
        };
        let members = room.members.read().unwrap_or_else(|e| e.into_inner());
        let users: BTreeSet<&str> = members
            .local
            .keys()
            .chain(members.remote.keys())
            .map(|u| &**u)
            .collect();
        users.into_iter().map(str::to_owned).collect()
    }

    /// Calls `then` with the users that have a connection on this node in a conversation, under
    /// the room's lock (so that a snapshot sent from `then` cannot overtake a presence change
    /// published after it); `None` when the room is not open here.
    pub fn with_local_online<R>(
        &self,
        tenant: &str,
        conversation: &str,
        then: impl FnOnce(Vec<String>) -> R,
    ) -> Option<R> {
        let (_, room) = self.room(tenant, conversation)?;
        let members = room.members.read().unwrap_or_else(|e| e.into_inner());
        Some(then(members.local.keys().map(|u| u.to_string()).collect()))
    }

    /// Another node reports a presence change in a conversation open here.
    fn remote_presence(&self, tenant: &str, conversation: &str, node: &str, user: &str, on: bool) {
        let Some((key, room)) = self.room(tenant, conversation) else {
            return;
        };
        let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
        members.set_remote(&key.conversation, node, user, on);
    }

    /// Another node's complete list of local users in a conversation open here.
    fn remote_snapshot(&self, tenant: &str, conversation: &str, node: &str, users: &[String]) {
        let Some((key, room)) = self.room(tenant, conversation) else {
            return;
        };
        let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
        members.replace_remote(&key.conversation, node, users);
    }

    /// A node went silent: its users go offline wherever no one else has them.
    fn remote_node_gone(&self, node: &str) {
        for (key, room) in self.room_entries() {
            let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
            members.replace_remote(&key.conversation, node, &[]);
        }
    }

    /// The room of a tenant's conversation, with its key, when it is open here.
    fn room(&self, tenant: &str, conversation: &str) -> Option<(RoomKey, Arc<Room>)> {
        let id: &dyn RoomId = &(tenant, conversation);
        self.rooms
            .get(id)
            .map(|r| (r.key().clone(), r.value().clone()))
    }

    /// Every room with its key, copied out so that no map guard is held while rooms are locked.
    fn room_entries(&self) -> Vec<(RoomKey, Arc<Room>)> {
        self.rooms
            .iter()
            .map(|r| (r.key().clone(), r.value().clone()))
            .collect()
    }

    /// Delivers an ephemeral frame to a room here and on the other nodes, skipping
    /// `skip_user`'s connections. A full queue drops the frame for that connection (ephemeral
    /// frames are never replayed).
    pub fn publish_ephemeral(
        &self,
        tenant: &str,
        conversation: &str,
        text: Utf8Bytes,
        skip_user: Option<&str>,
    ) {
        let room = self.room(tenant, conversation);
        let frame = Ephemeral {
            conversation: match &room {
                Some((key, _)) => key.conversation.clone(),
                None => Arc::from(conversation),
            },
            text,
        };
        if let Some(fanout) = self.fanout.as_ref() {
            fanout.publish_ephemeral(tenant, &frame, skip_user);
        }
        if let Some((_, room)) = room {
            self.deliver_ephemeral(&room, Arc::new(frame), skip_user);
        }
    }

    /// Delivers an ephemeral frame to this node's subscribers of `room` only.
    fn deliver_ephemeral(&self, room: &Room, frame: Arc<Ephemeral>, skip_user: Option<&str>) {
        let members = room.members.read().unwrap_or_else(|e| e.into_inner());
        members.push_ephemeral(&frame, self.defer(), |sub| {
            skip_user.is_some_and(|u| *sub.user == *u)
        });
    }

    /// Delivers a durable event to this node's subscribers of `room` only. A full queue cuts
    /// that subscriber off as a slow consumer.
    fn deliver_event(&self, room: &Room, event: Arc<Delivered>) {
        let members = room.members.read().unwrap_or_else(|e| e.into_inner());
        let mut count = 0u64;
        let defer = self.defer();
        for sub in members.subscribers.iter() {
            match sub.push(Outbound::Event(event.clone()), defer) {
                Ok(()) => count += 1,
                Err(PushError::Full) => sub.outbox.kick(),
                Err(PushError::Closed) => {}
            }
        }
        m::fanout_deliveries(count);
    }

    /// Tells every local subscriber to catch up from storage (after a fan-out outage, when
    /// events from other nodes may have been missed).
    fn resync_all(&self) {
        for (key, room) in self.room_entries() {
            let members = room.members.read().unwrap_or_else(|e| e.into_inner());
            for sub in members.subscribers.iter() {
                let resync = Outbound::Resync(key.conversation.clone());
                if let Err(PushError::Full) = sub.outbox.push(resync) {
                    sub.outbox.kick();
                }
            }
        }
    }

    /// A locally committed event: to this node's subscribers and to the other nodes.
    fn publish_event(&self, event: Rendered) {
        m::event_committed(event.kind);
        // One lookup serves both: the room's shared conversation id and its subscribers.
        let room = self.room(&event.tenant, &event.conversation);
        let delivered = Arc::new(Delivered {
            conversation: match &room {
                Some((key, _)) => key.conversation.clone(),
                None => Arc::from(event.conversation),
            },
            seq: event.seq,
            kind: event.kind,
            subject: event.subject,
            text: Utf8Bytes::from(event.frame),
        });
        if let Some(fanout) = self.fanout.as_ref() {
            fanout.publish_event(&event.tenant, &delivered);
        }
        if let Some((_, room)) = room {
            self.deliver_event(&room, delivered);
        }
    }
}

impl EventSink for Hub {
    fn publish(&self, events: Vec<StoredEvent>) {
        self.publish_rendered(render_all(events));
    }
}

impl RenderedSink for Hub {
    fn publish_rendered(&self, events: Vec<Rendered>) {
        for event in events {
            self.publish_event(event);
        }
    }
}

/// Messages handed over at once by the inbound loop: a burst is applied without a wake-up per
/// message.
const INBOUND_BATCH: usize = 64;

/// Applies what the fan-out hands over, in order, until it stops.
async fn inbound_loop(hub: Arc<Hub>, mut inbound: mpsc::Receiver<Inbound>) {
    let mut batch = Vec::with_capacity(INBOUND_BATCH);
    while inbound.recv_many(&mut batch, INBOUND_BATCH).await > 0 {
        for item in batch.drain(..) {
            hub.apply(item);
        }
    }
}

impl Hub {
    /// Applies one message from the other nodes.
    fn apply(&self, item: Inbound) {
        match item {
            Inbound::Event { tenant, event } => {
                if let Some((_, room)) = self.room(&tenant, &event.conversation) {
                    self.deliver_event(&room, Arc::new(event));
                }
            }
            Inbound::Ephemeral {
                tenant,
                frame,
                skip_user,
            } => {
                if let Some((_, room)) = self.room(&tenant, &frame.conversation) {
                    self.deliver_ephemeral(&room, Arc::new(frame), skip_user.as_deref());
                }
            }
            Inbound::Presence {
                tenant,
                conversation,
                node,
                user,
                online,
            } => self.remote_presence(&tenant, &conversation, &node, &user, online),
            Inbound::Users {
                tenant,
                conversation,
                node,
                users,
                answer,
            } => {
                self.remote_snapshot(&tenant, &conversation, &node, &users);
                if answer {
                    self.send_users(&tenant, &conversation, false);
                }
            }
            Inbound::Followed(rooms) => {
                for (tenant, conversation) in rooms {
                    self.send_users(&tenant, &conversation, true);
                }
            }
            Inbound::NodeGone(node) => self.remote_node_gone(&node),
            Inbound::Resync => self.resync_all(),
        }
    }

    /// Tells the other nodes this node's users in a room open here (asking back for theirs
    /// with `ask_back`), under the room's lock: a presence change published after it cannot
    /// overtake it.
    fn send_users(&self, tenant: &str, conversation: &str, ask_back: bool) {
        let Some(fanout) = &self.fanout else {
            return;
        };
        self.with_local_online(tenant, conversation, |users| {
            fanout.publish_users(tenant, conversation, &users, ask_back);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Arc<str> {
        "t".into()
    }

    fn event(conversation: &str, seq: u64) -> Rendered {
        Rendered {
            tenant: "t".into(),
            conversation: conversation.into(),
            seq,
            kind: EventKind::Message,
            subject: None,
            ts: 0,
            frame: format!("{{\"seq\":{seq}}}"),
        }
    }

    fn subscriber(hub: &Hub, user: &str, capacity: usize) -> (Subscriber, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(capacity));
        let sub = Subscriber {
            conn: hub.next_conn_id(),
            user: user.into(),
            outbox: outbox.clone(),
        };
        (sub, outbox)
    }

    /// A fan-out that records what the hub asks of it.
    #[derive(Default)]
    struct Recorder {
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl Recorder {
        fn record(&self, call: String) {
            self.calls.lock().expect("calls").push(call);
        }

        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().expect("calls"))
        }
    }

    impl Fanout for Recorder {
        fn open_room(&self, tenant: &str, conversation: &str) {
            self.record(format!("open {tenant}/{conversation}"));
        }
        fn close_room(&self, tenant: &str, conversation: &str) {
            self.record(format!("close {tenant}/{conversation}"));
        }
        fn publish_event(&self, tenant: &str, event: &Delivered) {
            self.record(format!(
                "event {tenant}/{} {}",
                event.conversation, event.seq
            ));
        }
        fn publish_ephemeral(&self, _: &str, _: &Ephemeral, _: Option<&str>) {}
        fn publish_presence(&self, tenant: &str, conversation: &str, user: &str, online: bool) {
            self.record(format!("presence {tenant}/{conversation} {user} {online}"));
        }
        fn publish_users(&self, tenant: &str, conversation: &str, users: &[String], ask: bool) {
            self.record(format!("users {tenant}/{conversation} {users:?} {ask}"));
        }
        fn is_connected(&self) -> bool {
            true
        }
        fn close(&self) {}
    }

    #[tokio::test]
    async fn a_clustered_hub_owns_its_fanout_and_applies_what_it_hands_back() {
        let recorder = Arc::new(Recorder::default());
        let (inbound, rx) = mpsc::channel(8);
        let hub = Hub::start(Some(Link {
            fanout: recorder.clone(),
            inbound: rx,
        }));
        assert!(hub.fanout().is_some_and(|f| f.is_connected()));
        let (a, rx_a) = subscriber(&hub, "a", 8);
        let a_conn = a.conn;
        hub.subscribe(&tenant(), &"c".into(), a);
        hub.publish_rendered(vec![event("c", 1)]);
        assert_eq!(
            recorder.take(),
            ["open t/c", "presence t/c a true", "event t/c 1"]
        );
        assert_eq!(seq_of(rx_a.try_pop()), Some(1));

        // From the other nodes, in order: an event, a sync request, the room followed.
        let room = || (Arc::<str>::from("t"), Arc::<str>::from("c"));
        let items = [
            Inbound::Event {
                tenant: room().0,
                event: Delivered {
                    conversation: room().1,
                    seq: 2,
                    kind: EventKind::Message,
                    subject: None,
                    text: Utf8Bytes::from("{}"),
                },
            },
            Inbound::Users {
                tenant: room().0,
                conversation: room().1,
                node: "n1".into(),
                users: vec!["bob".into()],
                answer: true,
            },
            Inbound::Followed(vec![room()]),
        ];
        for item in items {
            inbound.send(item).await.expect("hub listens");
        }
        let got = tokio::time::timeout(Duration::from_secs(5), rx_a.pop())
            .await
            .expect("event from another node");
        assert_eq!(seq_of(Some(got)), Some(2));
        tokio::time::timeout(Duration::from_secs(5), async {
            while recorder.calls.lock().expect("calls").len() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the hub answers");
        assert_eq!(
            recorder.take(),
            [r#"users t/c ["a"] false"#, r#"users t/c ["a"] true"#]
        );
        assert_eq!(hub.online("t", "c"), ["a", "bob"]);

        // When the fan-out stops (its sender dropped), the hub's task lets the hub go.
        drop(inbound);
        hub.unsubscribe("t", "c", a_conn);
        assert_eq!(recorder.take()[..], ["presence t/c a false", "close t/c"]);
        let weak = Arc::downgrade(&hub);
        drop(hub);
        tokio::time::timeout(Duration::from_secs(5), async {
            while weak.strong_count() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("no cycle keeps the hub alive");
    }

    #[tokio::test]
    async fn events_reach_every_subscriber_of_the_room_only() {
        let hub = Hub::new();
        let room: Arc<str> = "c1".into();
        let (a, rx_a) = subscriber(&hub, "a", 8);
        let (b, rx_b) = subscriber(&hub, "b", 8);
        let (other, rx_other) = subscriber(&hub, "c", 8);
        hub.subscribe(&tenant(), &room, a);
        hub.subscribe(&tenant(), &room, b);
        hub.subscribe(&tenant(), &"c2".into(), other);
        hub.publish_rendered(vec![event("c1", 1), event("c1", 2)]);
        for rx in [&rx_a, &rx_b] {
            for seq in 1..=2 {
                match rx.try_pop() {
                    Some(Outbound::Event(d)) => assert_eq!(d.seq, seq),
                    other => panic!("expected event {seq}, got {other:?}"),
                }
            }
        }
        assert!(rx_other.try_pop().is_none());
    }

    #[tokio::test]
    async fn a_full_queue_kicks_only_that_subscriber() {
        let hub = Hub::new();
        let room: Arc<str> = "c".into();
        let (slow, slow_outbox) = subscriber(&hub, "slow", 1);
        let (fast, rx_fast) = subscriber(&hub, "fast", 16);
        hub.subscribe(&tenant(), &room, slow);
        hub.subscribe(&tenant(), &room, fast);
        hub.publish_rendered((1..=5).map(|s| event("c", s)).collect());
        tokio::time::timeout(std::time::Duration::from_secs(1), slow_outbox.kicked())
            .await
            .expect("slow consumer kicked");
        assert!(!rx_fast.is_kicked());
        let mut seqs = vec![];
        while let Some(Outbound::Event(d)) = rx_fast.try_pop() {
            seqs.push(d.seq);
        }
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn rooms_of_two_tenants_never_meet_under_one_conversation_id() {
        let hub = Hub::new();
        let room: Arc<str> = "c".into();
        let (a, rx_a) = subscriber(&hub, "a", 8);
        let (b, rx_b) = subscriber(&hub, "b", 8);
        a.outbox.enable_presence();
        let b_conn = b.conn;
        hub.subscribe(&tenant(), &room, a);
        hub.subscribe(&"other".into(), &room, b);
        assert_eq!(hub.room_count(), 2);
        // No presence crosses, nor do events or ephemeral frames.
        assert!(rx_a.try_pop().is_none());
        hub.publish_rendered(vec![event("c", 1)]);
        hub.publish_ephemeral("other", "c", Utf8Bytes::from("typing"), None);
        assert_eq!(seq_of(rx_a.try_pop()), Some(1));
        assert!(rx_a.try_pop().is_none());
        assert!(matches!(rx_b.try_pop(), Some(Outbound::Ephemeral(_))));
        assert!(rx_b.try_pop().is_none());
        assert_eq!(hub.online("t", "c"), ["a"]);
        assert_eq!(hub.online("other", "c"), ["b"]);
        // Leaving one tenant's room does not touch the other's.
        hub.unsubscribe("t", "c", b_conn);
        assert_eq!(hub.room_count(), 2);
        hub.unsubscribe("other", "c", b_conn);
        assert_eq!(hub.room_count(), 1);
        assert_eq!(hub.online("other", "c"), Vec::<String>::new());
    }

    fn presence_of(rx: &Outbox) -> Option<String> {
        match rx.try_pop() {
            Some(Outbound::Ephemeral(frame)) => Some(frame.text.to_string()),
            Some(other) => panic!("expected a presence frame, got {other:?}"),
            None => None,
        }
    }

    #[tokio::test]
    async fn presence_is_the_union_of_local_connections_and_remote_nodes() {
        let hub = Hub::new();
        let room: Arc<str> = "c".into();
        let (watcher, rx) = subscriber(&hub, "w", 16);
        watcher.outbox.enable_presence();
        let (bob, _rx_bob) = subscriber(&hub, "bob", 16);
        let bob_conn = bob.conn;
        hub.subscribe(&tenant(), &room, watcher);
        hub.subscribe(&tenant(), &room, bob);
        let online = presence_of(&rx).expect("bob online");
        assert!(online.contains(r#""user":"bob","online":true"#), "{online}");

        // Bob is also on node n1: leaving here keeps him online.
        hub.remote_presence("t", "c", "n1", "bob", true);
        hub.unsubscribe("t", "c", bob_conn);
        assert_eq!(presence_of(&rx), None);
        assert_eq!(hub.online("t", "c"), vec!["bob", "w"]);

        // Carol arrives by snapshot from n2; n2 then goes silent.
        hub.remote_snapshot("t", "c", "n2", &["carol".to_owned()]);
        assert!(
            presence_of(&rx)
                .expect("carol")
                .contains(r#""carol","online":true"#)
        );
        hub.remote_node_gone("n2");
        assert!(
            presence_of(&rx)
                .expect("carol")
                .contains(r#""carol","online":false"#)
        );
        // A snapshot from n1 without bob takes him offline.
        hub.remote_snapshot("t", "c", "n1", &[]);
        assert!(
            presence_of(&rx)
                .expect("bob")
                .contains(r#""bob","online":false"#)
        );
        assert_eq!(hub.online("t", "c"), vec!["w"]);
        assert_eq!(
            hub.with_local_online("t", "c", |u| u),
            Some(vec!["w".to_owned()])
        );
        assert_eq!(hub.with_local_online("t", "elsewhere", |u| u), None);
    }

    #[tokio::test]
    async fn ephemeral_frames_skip_the_sender_and_rooms_empty_out() {
        let hub = Hub::new();
        let room: Arc<str> = "c".into();
        let (a, rx_a) = subscriber(&hub, "a", 4);
        let (b, rx_b) = subscriber(&hub, "b", 4);
        let a_conn = a.conn;
        let b_conn = b.conn;
        hub.subscribe(&tenant(), &room, a);
        hub.subscribe(&tenant(), &room, b);
        hub.publish_ephemeral("t", "c", Utf8Bytes::from("typing"), Some("a"));
        assert!(rx_a.try_pop().is_none());
        assert!(matches!(rx_b.try_pop(), Some(Outbound::Ephemeral(_))));
        hub.unsubscribe("t", "c", a_conn);
        assert_eq!(hub.room_count(), 1);
        hub.unsubscribe("t", "c", b_conn);
        assert_eq!(hub.room_count(), 0);
    }

    fn seq_of(item: Option<Outbound>) -> Option<u64> {
        match item {
            Some(Outbound::Event(event)) => Some(event.seq),
            _ => None,
        }
    }

    /// Waits on `outbox` in a task of its own: when it was woken, and with what.
    async fn wait_on(
        outbox: &Arc<Outbox>,
    ) -> tokio::task::JoinHandle<(tokio::time::Instant, Outbound)> {
        let waiting = outbox.clone();
        let waiter = tokio::spawn(async move {
            let item = waiting.pop().await;
            (tokio::time::Instant::now(), item)
        });
        tokio::task::yield_now().await;
        waiter
    }

    /// The waiter's wake, failing (not hanging, on the paused clock) if it never comes.
    async fn woken(
        waiter: tokio::task::JoinHandle<(tokio::time::Instant, Outbound)>,
    ) -> (tokio::time::Instant, Option<u64>) {
        let (at, item) = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the session is woken")
            .expect("waiter");
        (at, seq_of(Some(item)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_delay_holds_busy_sessions_until_the_tick() {
        let hub = Hub::new();
        let shutdown = CancellationToken::new();
        let delay = Duration::from_millis(100);
        hub.start_write_delay(delay, shutdown.clone());
        let room: Arc<str> = "c".into();
        let (a, rx_a) = subscriber(&hub, "a", 16);
        let (b, rx_b) = subscriber(&hub, "b", 16);
        hub.subscribe(&tenant(), &room, a);
        hub.subscribe(&tenant(), &room, b);
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);

        // Quiet connections: the first delivery wakes them at once.
        let waiter = wait_on(&rx_a).await;
        hub.publish_rendered(vec![event("c", 1)]);
        assert_eq!(woken(waiter).await, (at(0), Some(1)));
        assert_eq!(seq_of(rx_b.try_pop()), Some(1));

        // Busy now: the next deliveries wait for the tick, each session listed once.
        let waiter = wait_on(&rx_a).await;
        hub.publish_rendered(vec![event("c", 2), event("c", 3)]);
        assert_eq!(hub.wakes().map(WakeBatch::len), Some(2));
        assert_eq!(woken(waiter).await, (at(100), Some(2)));
        assert_eq!(seq_of(rx_a.try_pop()), Some(3));
        assert_eq!(
            (0..2).map(|_| seq_of(rx_b.try_pop())).collect::<Vec<_>>(),
            [Some(2), Some(3)]
        );
        assert_eq!(hub.wakes().map(WakeBatch::len), Some(0));

        // Woken by that tick, so still busy: the next tick, not this one again.
        let waiter = wait_on(&rx_a).await;
        hub.publish_rendered(vec![event("c", 4)]);
        assert_eq!(woken(waiter).await, (at(200), Some(4)));

        // Quiet for a whole delay again: at once.
        tokio::time::sleep_until(at(350)).await;
        let waiter = wait_on(&rx_a).await;
        hub.publish_rendered(vec![event("c", 5)]);
        assert_eq!(woken(waiter).await, (at(350), Some(5)));

        // After shutdown the tick is gone: even a busy session is woken at once.
        shutdown.cancel();
        tokio::task::yield_now().await;
        let waiter = wait_on(&rx_a).await;
        hub.publish_rendered(vec![event("c", 6)]);
        assert_eq!(woken(waiter).await, (at(350), Some(6)));
    }

    #[tokio::test]
    async fn without_a_write_delay_nothing_is_held_back() {
        let hub = Hub::new();
        hub.start_write_delay(Duration::ZERO, CancellationToken::new());
        assert!(hub.wakes().is_none());
        let room: Arc<str> = "c".into();
        let (a, rx_a) = subscriber(&hub, "a", 4);
        hub.subscribe(&tenant(), &room, a);
        let waiter = wait_on(&rx_a).await;
        hub.publish_rendered(vec![event("c", 1)]);
        assert_eq!(woken(waiter).await.1, Some(1));
    }
}
