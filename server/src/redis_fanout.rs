//! Fan-out between nodes over Redis pub/sub.
//!
//! Each node subscribes only to the channels of rooms with local members
//! (`confab:{tenant}:{conversation}`) and publishes each locally originated event once. A message
//! is one header line (JSON: origin node, kind, seq, …) and the frame text, which other nodes
//! deliver as is; a node ignores its own publications. Order per conversation comes from the
//! seq: a session that sees a hole fills it from storage.
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
        });
        tokio::spawn(publish_loop(publisher, publish_rx, shutdown.clone()));
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
        self.wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
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
        };
        self.enqueue(channel(tenant, &frame.conversation), &header, &frame.text);
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
    sync_subscriptions(&mut sink, fanout, &mut subscribed).await?;
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
                deliver(&hub, &node, message.get_channel_name(), message.get_payload_bytes());
            }
            _ = changed => sync_subscriptions(&mut sink, fanout, &mut subscribed).await?,
        }
    }
}

async fn sync_subscriptions(
    sink: &mut redis::aio::PubSubSink,
    fanout: &Weak<RedisFanout>,
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
    }
    if !remove.is_empty() {
        sink.unsubscribe(&remove).await?;
    }
    *subscribed = wanted;
    Ok(())
}

/// Delivers a message from another node to this node's subscribers.
fn deliver(hub: &Hub, node: &str, channel: &str, payload: &[u8]) {
    let Some(conversation) = conversation_of(channel) else {
        return;
    };
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
        deliver(&hub, "me", "confab:t:c", b"no newline");
        deliver(&hub, "me", "confab:t:c", b"{bad json}\n{}");
        deliver(&hub, "me", "confab:t:c", b"{\"o\":\"x\"}\n\xff\xfe");
    }
}
