//! Fan-out between nodes: how a node's hub reaches the rooms of the other nodes of a cluster.
//!
//! - [`Fanout`]: what the hub asks of a fan-out (follow the rooms with local members, publish
//!   local events, ephemeral frames and presence, report its health for `/ready`). The hub owns
//!   it as an `Arc<dyn Fanout>`; the fan-out knows nothing of the hub.
//! - [`Inbound`]: what the fan-out hands back, through a bounded channel that the hub drains in
//!   a task of its own ([`crate::hub::Hub::start`]). When the channel is full the fan-out waits
//!   (backpressure: Redis buffers meanwhile and, past its pub/sub output limit, drops the
//!   connection, after which the reconnect resyncs every session from storage); each wait is
//!   counted in `confab_fanout_inbound_waits_total`.
//! - [`redis`]: the Redis pub/sub implementation, on one Redis or sharded over several (each
//!   conversation on one; see its module docs for what is spread how). [`start`] builds it from
//!   the configuration; a single node has none.
//!
//! Build order, with no cycle: the fan-out first, then the hub that owns it (and drains its
//! inbound channel), then the application state that owns the hub.

pub mod redis;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::HubBackend;
use crate::hub::{Delivered, Ephemeral};

pub use self::redis::{FanoutError, RedisFanout};

/// Who a list of this node's users in a room is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsersTo<'a> {
    /// Every node following the room, each of which answers with its own (this node just
    /// started following it).
    All,
    /// Only the node that asked: an answer goes to the asker alone, so a room followed by n
    /// nodes costs each node n deliveries to learn the others, not n².
    Node(&'a str),
}

/// This node's users in one room, for [`Fanout::publish_answers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomUsers<'a> {
    pub tenant: &'a str,
    pub conversation: &'a str,
    pub users: Vec<String>,
}

/// Inbound messages waiting for the hub before the fan-out waits (see the module docs).
pub const INBOUND_QUEUE: usize = 4096;

/// Fan-out to other nodes (the cluster's pub/sub). The hub tells it which rooms have local
/// members (opens and closes are counted, so their order does not matter) and hands it every
/// locally originated event once. Implementations must not block: they are called under the
/// room's lock, on the delivery path.
pub trait Fanout: Send + Sync + 'static {
    fn open_room(&self, tenant: &str, conversation: &str);
    fn close_room(&self, tenant: &str, conversation: &str);
    fn publish_event(&self, tenant: &str, event: &Delivered);
    fn publish_ephemeral(&self, tenant: &str, frame: &Ephemeral, skip_user: Option<&str>);
    /// This node's first connection of `user` joined the room (`online`), or its last left.
    fn publish_presence(&self, tenant: &str, conversation: &str, user: &str, online: bool);
    /// This node's users in a room: to every node following it, which answer with theirs
    /// ([`Inbound::Users`] with `answer` set), or as that answer to the node that asked.
    fn publish_users(&self, tenant: &str, conversation: &str, users: &[String], to: UsersTo<'_>);
    /// This node's users in several rooms, answering `node`'s syncs of them: one message per
    /// shard rather than one per room (a node that opens many rooms at once, as in a reconnect
    /// storm, would otherwise take one message per room from every other node of each).
    fn publish_answers(&self, node: &str, answers: &[RoomUsers<'_>]) {
        for answer in answers {
            self.publish_users(
                answer.tenant,
                answer.conversation,
                &answer.users,
                UsersTo::Node(node),
            );
        }
    }
    /// `user` of `tenant` has new user events: the other nodes nudge their connections of them.
    fn publish_user(&self, tenant: &str, user: &str);
    /// Whether each link to the other nodes is up now, in order: one per Redis shard. `/ready`
    /// answers 503 while none is, and names the ones down while only some are.
    fn links(&self) -> Vec<bool>;
    /// Whether cross-node delivery works now for every conversation (every link is up).
    fn is_connected(&self) -> bool {
        self.links().iter().all(|up| *up)
    }
    /// Stops the background tasks (at the end of shutdown); later publishes are dropped.
    fn close(&self);
}

impl std::fmt::Debug for dyn Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fanout")
    }
}

/// What the fan-out hands to the hub, in the order it learned it.
#[derive(Debug)]
pub enum Inbound {
    /// A durable event of another node, for this node's subscribers.
    Event { tenant: Arc<str>, event: Delivered },
    /// An ephemeral frame of another node, skipping `skip_user`'s connections.
    Ephemeral {
        tenant: Arc<str>,
        frame: Ephemeral,
        skip_user: Option<String>,
    },
    /// `node`'s first connection of `user` joined the room (`online`), or its last left.
    Presence {
        tenant: Arc<str>,
        conversation: Arc<str>,
        node: String,
        user: String,
        online: bool,
    },
    /// `node`'s complete list of users in a room; with `answer`, it asks for ours.
    Users {
        tenant: Arc<str>,
        conversation: Arc<str>,
        node: String,
        users: Vec<String>,
        answer: bool,
    },
    /// `node`'s complete lists of users in several rooms (tenant, conversation, users): its
    /// answers to this node's syncs.
    Answers {
        node: String,
        rooms: Vec<(Arc<str>, Arc<str>, Vec<String>)>,
    },
    /// The fan-out now follows these rooms (tenant, conversation): tell the other nodes who is
    /// here, and ask who is there; and the rooms' sessions catch up from storage, for events
    /// committed elsewhere between their join's read and the subscription taking effect. (Also
    /// handed over to repair the rooms' lost presence messages.)
    Followed(Vec<(Arc<str>, Arc<str>)>),
    /// Another node committed user events for `user`: nudge their connections here.
    User { tenant: Arc<str>, user: String },
    /// `node` went silent: its users go offline wherever no other node has them.
    NodeGone(String),
    /// Events of these rooms (tenant, conversation) may have been missed (after an outage of
    /// their shard): their sessions catch up from storage, and every user's connections read
    /// their user events again (the nudges of the outage are lost too).
    Resync(Vec<(Arc<str>, Arc<str>)>),
    /// Another node could not publish some durable events of these rooms: their sessions catch
    /// up from storage (a later event would reveal the hole, but not after a room's last one).
    Missed(Vec<(Arc<str>, Arc<str>)>),
}

/// A started fan-out and the receiving end of its inbound channel, for
/// [`crate::hub::Hub::start`].
#[derive(Debug)]
pub struct Link {
    pub fanout: Arc<dyn Fanout>,
    pub inbound: mpsc::Receiver<Inbound>,
}

/// Starts the configured fan-out: none for a single node, Redis pub/sub (on one Redis or
/// sharded over several) for a cluster. A Redis that cannot be reached at start is connected in
/// the background (its conversations degraded meanwhile, as in a later outage); fails only on a
/// server that refuses the node.
pub async fn start(backend: &HubBackend) -> Result<Option<Link>, FanoutError> {
    match backend {
        HubBackend::Local => Ok(None),
        HubBackend::Redis(shards) => RedisFanout::start(shards.urls()).await.map(Some),
    }
}
