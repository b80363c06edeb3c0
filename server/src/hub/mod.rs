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
//! Presence: each room knows its local connections' users and remembers which other nodes
//! report each user online (fed by the fan-out). A user is online in a conversation while any
//! of those says so; `presence` frames go out when that union flips, under the room's lock so
//! that one user's online/offline frames never overtake each other. The remote state lives in
//! the room, so it is dropped with it. A user's local flips in one room are coalesced: the first
//! two within a [`PRESENCE_WINDOW`] go out at once (a join and a leave), later ones are held and
//! the state at the window's end goes out once, if it changed (a client joining and leaving in
//! a loop costs its observers and the other nodes at most three frames per window, not one per
//! flip).
//!
//! Rooms are keyed by tenant and conversation ([`room`]: a room's key, its connections and its
//! presence), so rooms of two tenants never meet; a session subscribes only after the store said
//! its user is a member.
//!
//! Other nodes: a clustered hub owns its [`Fanout`] (built first, see [`crate::fanout`]), tells
//! it about rooms, events and presence, and applies what it hands back (events of other nodes,
//! their presence, resyncs) in one task, in order.

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::WriteDelay;
use crate::fanout::{Fanout, Inbound, Link, RoomUsers, UsersTo};
use crate::outbox::{Defer, Outbox, PushError, WakeBatch};
use crate::people::People;
use confab_protocol::EventKind;
use confab_storage::{EventSink, StoredEvent};
use dashmap::DashMap;
use tungstenite::Utf8Bytes;

use crate::events::{Rendered, RenderedSink, render_all};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

mod room;
pub mod users;

use room::{Member, Members, Room, RoomId, RoomKey};

/// A durable event ready to send: its position and its shared frame text.
#[derive(Debug)]
pub struct Delivered {
    pub conversation: Arc<str>,
    pub seq: u64,
    pub kind: EventKind,
    pub subject: Option<String>,
    pub text: Utf8Bytes,
    /// When the event was committed on this node (`None` for events from other nodes, whose
    /// clocks are not this one's): the start of `confab_fanout_latency_seconds`.
    pub committed: Option<Instant>,
}

impl Delivered {
    /// An event committed on another node: not timed here (its clock is not this one's).
    pub fn remote(
        conversation: Arc<str>,
        seq: u64,
        kind: EventKind,
        subject: Option<String>,
        text: Utf8Bytes,
    ) -> Delivered {
        Delivered {
            conversation,
            seq,
            kind,
            subject,
            text,
            committed: None,
        }
    }
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
    /// The user has new user events: read them from storage (see [`users`]).
    User,
}

/// A connection's handle, as a session hands it to the hub. A room keeps its user and outbox
/// (the outbox names the connection there); the user's record keeps its id and outbox.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub conn: u64,
    pub user: Arc<str>,
    /// The connection's queue and signals.
    pub outbox: Arc<Outbox>,
}

/// The room hub.
#[derive(Debug)]
pub struct Hub {
    rooms: DashMap<RoomKey, Arc<Room>, RandomState>,
    /// One record per user seen, with the user's connections here, for their user events
    /// ([`users`]); shared with the state (sightings, connection caps).
    people: Arc<People>,
    next_conn: AtomicU64,
    /// The other nodes, when clustered.
    fanout: Option<Arc<dyn Fanout>>,
    /// With a write delay: the sessions to wake on its next tick.
    wakes: OnceLock<Arc<WakeBatch>>,
    /// Clustered: rooms whose last local subscriber left, oldest first, and when
    /// ([`ROOM_LINGER`]).
    lingering: Mutex<VecDeque<(RoomKey, Instant)>>,
    /// The other nodes' ids, shared by every room's presence entries.
    nodes: Mutex<std::collections::HashSet<Arc<str>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            rooms: DashMap::with_hasher(RandomState::new()),
            people: Arc::default(),
            next_conn: AtomicU64::new(1),
            fanout: None,
            wakes: OnceLock::new(),
            lingering: Mutex::new(VecDeque::new()),
            nodes: Mutex::new(std::collections::HashSet::new()),
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

    /// Every user seen, one record each (see [`crate::people`]).
    pub fn people(&self) -> &Arc<People> {
        &self.people
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

    /// Starts the write delay ([`WakeBatch::start`]): the wake of a busy session may be held
    /// back until the next tick, so that a connection's deliveries of that window go out in one
    /// write. Presence frames, resyncs, kicks and a session's replies are never delayed. Set
    /// once, before serving; a zero delay changes nothing.
    pub fn start_write_delay(
        &self,
        delay: WriteDelay,
        target: Duration,
        shutdown: CancellationToken,
    ) {
        let Some(wakes) = WakeBatch::start(delay, target, shutdown) else {
            return;
        };
        if self.wakes.set(wakes).is_err() {
            tracing::warn!("write delay already started; ignoring the second one");
        }
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
        let (user, outbox) = (subscriber.user.clone(), subscriber.outbox.clone());
        let member = Member {
            user: subscriber.user,
            outbox: subscriber.outbox,
        };
        let Some(first) = members.join(member) else {
            return false;
        };
        m::room_joined(1.0);
        if first {
            self.local_presence(
                &room,
                &mut members,
                tenant,
                conversation,
                &user,
                true,
                Some(&outbox),
            );
        }
        true
    }

    /// This node's first connection of `user` joined the room, or its last left: tells the
    /// other nodes, and the local connections unless another node already had the user online.
    ///
    /// Coalesced: past [`PRESENCE_FLIPS`] flips within one [`PRESENCE_WINDOW`], a flip is held,
    /// and one timer per room and user publishes the state at the window's end if it changed.
    #[allow(clippy::too_many_arguments)]
    fn local_presence(
        &self,
        room: &Arc<Room>,
        members: &mut Members,
        tenant: &str,
        conversation: &Arc<str>,
        user: &Arc<str>,
        online: bool,
        skip: Option<&Arc<Outbox>>,
    ) {
        let now = Instant::now();
        if let Some(gate) = members.gate_mut(user)
            && now.duration_since(gate.at) < PRESENCE_WINDOW
        {
            if gate.flips < PRESENCE_FLIPS && !gate.held {
                gate.flips += 1;
                gate.online = online;
                publish_presence(
                    self.fanout.as_deref(),
                    members,
                    tenant,
                    conversation,
                    user,
                    online,
                    skip,
                );
                return;
            }
            if gate.held {
                m::presence_coalesced();
                return;
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                gate.held = true;
                m::presence_coalesced();
                runtime.spawn(flush_presence(
                    room.clone(),
                    self.fanout.clone(),
                    Arc::from(tenant),
                    conversation.clone(),
                    user.clone(),
                    gate.at + PRESENCE_WINDOW,
                ));
                return;
            }
        }
        members.gate_presence(user, online, now);
        publish_presence(
            self.fanout.as_deref(),
            members,
            tenant,
            conversation,
            user,
            online,
            skip,
        );
    }

    /// Removes a connection (named by its outbox) from a room; drops the room when it empties, or when clustered,
    /// [`ROOM_LINGER`] later if it is still empty then.
    pub fn unsubscribe(&self, tenant: &str, conversation: &str, outbox: &Arc<Outbox>) {
        let Some((key, room)) = self.room(tenant, conversation) else {
            return;
        };
        let now_empty = {
            let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
            if let Some((user, last)) = members.leave(outbox) {
                m::room_joined(-1.0);
                if last {
                    let conversation = &key.conversation;
                    let user = &user;
                    self.local_presence(
                        &room,
                        &mut members,
                        tenant,
                        conversation,
                        user,
                        false,
                        None,
                    );
                }
            }
            let empty = members.subscribers.is_empty();
            if empty && self.fanout.is_some() {
                // Queued under the room's lock, so the queue is in the order of `emptied`.
                let now = Instant::now();
                members.emptied = Some(now);
                let mut lingering = self.lingering.lock().unwrap_or_else(|e| e.into_inner());
                lingering.push_back((key.clone(), now));
                return;
            }
            empty
        };
        if now_empty {
            self.remove_if_empty(&key, None);
        }
    }

    /// Removes a room if it has no subscriber (re-checked under the map's entry lock: a join
    /// may have raced in) and, with `lingered`, has had none for [`ROOM_LINGER`] by then; then
    /// stops following it on the other nodes.
    fn remove_if_empty(&self, key: &RoomKey, lingered: Option<Instant>) {
        let removed = self.rooms.remove_if(key as &dyn RoomId, |_, room| {
            let members = room.members.read().unwrap_or_else(|e| e.into_inner());
            let long_enough = match (lingered, members.emptied) {
                (Some(now), Some(emptied)) => now.saturating_duration_since(emptied) >= ROOM_LINGER,
                (Some(_), None) => false,
                (None, _) => true,
            };
            members.subscribers.is_empty() && long_enough
        });
        if let (Some((key, _)), Some(fanout)) = (removed, self.fanout.as_ref()) {
            fanout.close_room(&key.tenant, &key.conversation);
        }
    }

    /// Closes the rooms that have lingered empty for [`ROOM_LINGER`] by `now`.
    fn close_lingering(&self, now: Instant) {
        let due: Vec<RoomKey> = {
            let mut lingering = self.lingering.lock().unwrap_or_else(|e| e.into_inner());
            let count = lingering
                .iter()
                .take_while(|(_, at)| now.saturating_duration_since(*at) >= ROOM_LINGER)
                .count();
            lingering.drain(..count).map(|(key, _)| key).collect()
        };
        for key in &due {
            self.remove_if_empty(key, Some(now));
        }
    }

    /// Number of rooms open here: with a local subscriber, or clustered, lingering after the
    /// last one left ([`ROOM_LINGER`]).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Users online in a tenant's conversation, here or on other nodes, sorted.
    pub fn online(&self, tenant: &str, conversation: &str) -> Vec<String> {
        let Some((_, room)) = self.room(tenant, conversation) else {
            return Vec::new();
        };
        let members = room.members.read().unwrap_or_else(|e| e.into_inner());
        let mut users = members.local_users();
        users.extend(members.remote.users().map(|u| &**u));
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
        let users = members.local_users();
        Some(then(users.into_iter().map(str::to_owned).collect()))
    }

    /// Another node reports a presence change in a conversation open here.
    fn remote_presence(&self, tenant: &str, conversation: &str, node: &str, user: &str, on: bool) {
        let Some((key, room)) = self.room(tenant, conversation) else {
            return;
        };
        let node = self.node_id(node);
        let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
        members.set_remote(&key.conversation, &node, user, on);
    }

    /// Another node's complete list of local users in a conversation open here.
    fn remote_snapshot(&self, tenant: &str, conversation: &str, node: &str, users: &[String]) {
        let Some((key, room)) = self.room(tenant, conversation) else {
            return;
        };
        let node = self.node_id(node);
        let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
        members.replace_remote(&key.conversation, &node, users);
    }

    /// A node went silent: its users go offline wherever no one else has them.
    fn remote_node_gone(&self, node: &str) {
        let node = self.node_id(node);
        for (key, room) in self.room_entries() {
            let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
            members.replace_remote(&key.conversation, &node, &[]);
        }
    }

    /// Another node's id, one `Arc` per node for every room's presence entries.
    fn node_id(&self, node: &str) -> Arc<str> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = nodes.get(node) {
            return id.clone();
        }
        let id: Arc<str> = Arc::from(node);
        nodes.insert(id.clone());
        id
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
        let mut defer = self.defer();
        for sub in members.subscribers.iter() {
            match sub.push(Outbound::Event(event.clone()), defer.as_mut()) {
                Ok(()) => count += 1,
                Err(PushError::Full) => sub.outbox.kick(),
                Err(PushError::Closed) => {}
            }
        }
        m::fanout_deliveries(count);
    }

    /// Tells the local subscribers of `rooms` to catch up from storage (after an outage of
    /// their fan-out shard, when events from other nodes may have been missed).
    fn resync(&self, rooms: &[(Arc<str>, Arc<str>)]) {
        for (tenant, conversation) in rooms {
            let Some((key, room)) = self.room(tenant, conversation) else {
                continue;
            };
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
            committed: Some(Instant::now()),
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

/// How long a clustered node keeps a room open after its last local subscriber left. A member
/// who comes back meanwhile (a reconnect, an app brought back, a reconnect storm after a deploy
/// or a network blip) finds the room as it was: still followed on Redis, with the other nodes'
/// presence known, so rejoining costs no `SUBSCRIBE`, no presence sync with every node of the
/// room and no catch-up read; and a room left for good costs its Redis traffic this long.
pub const ROOM_LINGER: Duration = Duration::from_secs(10);
/// How often lingering rooms are looked at.
const LINGER_SWEEP: Duration = Duration::from_secs(1);

/// The window over which a user's presence flips in one room are coalesced.
pub const PRESENCE_WINDOW: Duration = Duration::from_secs(1);
/// Flips published at once per window; later ones are held until its end.
pub const PRESENCE_FLIPS: u8 = 2;

/// Tells the other nodes, and the local connections unless another node already had the user
/// online.
fn publish_presence(
    fanout: Option<&dyn Fanout>,
    members: &Members,
    tenant: &str,
    conversation: &Arc<str>,
    user: &str,
    online: bool,
    skip: Option<&Arc<Outbox>>,
) {
    // Until the room's users went out in a sync, that sync carries this change too: a delta
    // now would cost each other node of the room one more message per join.
    if let Some(fanout) = fanout
        && members.announced
    {
        fanout.publish_presence(tenant, conversation, user, online);
    }
    if !members.remote.contains(user) {
        members.announce(conversation, user, online, skip);
    }
}

/// At the end of a presence window: publishes the user's local state in the room if it differs
/// from what was published last.
async fn flush_presence(
    room: Arc<Room>,
    fanout: Option<Arc<dyn Fanout>>,
    tenant: Arc<str>,
    conversation: Arc<str>,
    user: Arc<str>,
    due: Instant,
) {
    tokio::time::sleep_until(due.into()).await;
    let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
    let online = members.has_local(&user);
    let Some(gate) = members.gate_mut(&user) else {
        return;
    };
    gate.held = false;
    if gate.online == online {
        return;
    }
    members.gate_presence(&user, online, Instant::now());
    publish_presence(
        fanout.as_deref(),
        &members,
        &tenant,
        &conversation,
        &user,
        online,
        None,
    );
}

/// Applies what the fan-out hands over, in order, until it stops.
async fn inbound_loop(hub: Arc<Hub>, mut inbound: mpsc::Receiver<Inbound>) {
    let mut batch = Vec::with_capacity(INBOUND_BATCH);
    let mut sweep = tokio::time::interval(LINGER_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = inbound.recv_many(&mut batch, INBOUND_BATCH) => {
                if received == 0 {
                    return;
                }
                let mut asked = Asked::default();
                for item in batch.drain(..) {
                    hub.apply_one(item, &mut asked);
                }
                hub.answer(asked);
            }
            _ = sweep.tick() => hub.close_lingering(Instant::now()),
        }
    }
}

/// The syncs of other nodes met in one inbound batch, to answer at its end: (asker, tenant,
/// conversation).
type Asked = Vec<(String, Arc<str>, Arc<str>)>;

impl Hub {
    /// Applies one message from the other nodes (and answers it, if it asks).
    #[cfg(test)]
    fn apply(&self, item: Inbound) {
        let mut asked = Asked::default();
        self.apply_one(item, &mut asked);
        self.answer(asked);
    }

    /// Applies one message from the other nodes; the syncs to answer go to `asked`.
    fn apply_one(&self, item: Inbound, asked: &mut Asked) {
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
                    asked.push((node, tenant, conversation));
                }
            }
            Inbound::Answers { node, rooms } => {
                for (tenant, conversation, users) in &rooms {
                    self.remote_snapshot(tenant, conversation, &node, users);
                }
            }
            Inbound::Followed(rooms) => {
                for (tenant, conversation) in &rooms {
                    self.send_sync(tenant, conversation);
                }
                self.resync(&rooms);
            }
            Inbound::Missed(rooms) => self.resync(&rooms),
            Inbound::NodeGone(node) => self.remote_node_gone(&node),
            Inbound::User { tenant, user } => self.nudge_user(&tenant, &user),
            Inbound::Resync(rooms) => {
                self.resync(&rooms);
                self.nudge_all_users();
            }
        }
    }

    /// Answers the syncs of one inbound batch: to each asking node, its rooms' users in one
    /// message per shard ([`Fanout::publish_answers`]) instead of one per room. The rooms'
    /// locks are held until the answer is queued, so that no presence change of theirs
    /// published after it can overtake it (every other path locks one room at a time, so
    /// holding several here cannot deadlock).
    fn answer(&self, mut asked: Asked) {
        let Some(fanout) = &self.fanout else {
            return;
        };
        if asked.is_empty() {
            return;
        }
        asked.sort_unstable();
        // Each room once per asker: a room's lock is never taken twice here.
        asked.dedup();
        for group in asked.chunk_by(|a, b| a.0 == b.0) {
            let node = &group[0].0;
            let rooms: Vec<(RoomKey, Arc<Room>)> = group
                .iter()
                .filter_map(|(_, tenant, conversation)| self.room(tenant, conversation))
                .collect();
            let guards: Vec<_> = rooms
                .iter()
                .map(|(_, room)| room.members.read().unwrap_or_else(|e| e.into_inner()))
                .collect();
            let answers: Vec<RoomUsers<'_>> = rooms
                .iter()
                .zip(&guards)
                .map(|((key, _), members)| RoomUsers {
                    tenant: &key.tenant,
                    conversation: &key.conversation,
                    users: members
                        .local_users()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                })
                .collect();
            if !answers.is_empty() {
                fanout.publish_answers(node, &answers);
            }
            drop(guards);
        }
    }

    /// Tells every other node following a room open here this node's users in it, asking
    /// back for theirs, under the room's lock (a presence change published after it cannot
    /// overtake it); marks the room announced: its later changes go as presence deltas.
    fn send_sync(&self, tenant: &str, conversation: &str) {
        let Some(fanout) = &self.fanout else {
            return;
        };
        let Some((_, room)) = self.room(tenant, conversation) else {
            return;
        };
        let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
        members.announced = true;
        let users: Vec<String> = members
            .local_users()
            .into_iter()
            .map(str::to_owned)
            .collect();
        fanout.publish_users(tenant, conversation, &users, UsersTo::All);
    }
}

#[cfg(test)]
mod tests;
