//! Reaching a shard's Redis: the first contact at start, and the publisher (its loop, and its
//! connection when the shard was unreachable at start).
//!
//! A node starts whatever its shards do (an orchestrator restarting a node because one Redis is
//! down would only turn a partial outage into a crash loop): an unreachable shard is connected
//! in the background, with the same backoff as a lost one, and `/ready` and
//! `confab_fanout_connected{shard}` show it down meanwhile. A shard that answers but refuses the
//! node (a wrong password, a server that does not speak Redis) is a configuration error that
//! retrying cannot fix: the node refuses to start, naming it.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use std::borrow::Cow;

use super::shard::Shard;
use super::wire::{Header, MessageType, NODES_CHANNEL, message};
use super::{FanoutError, Inbound, MAX_BACKOFF, RedisFanout, hand_over};

/// Longest the first contact with one shard may take at start (the shards are tried at once):
/// a server that has not answered by then is connected in the background.
const START_TIMEOUT: Duration = Duration::from_secs(3);

/// A shard's client, and its publisher connection when the shard answered at start.
pub(super) struct FirstContact {
    pub client: redis::Client,
    pub publisher: Option<ConnectionManager>,
}

/// Opens shard `index`'s client and tries it once, subscriber then publisher. Fails only when
/// the URL is unusable or the server answers with a refusal; an unreachable server (refused
/// connection, timeout, unknown host, a Redis still loading) is logged and left to the
/// background.
pub(super) async fn first_contact(index: usize, url: &str) -> Result<FirstContact, FanoutError> {
    let failed = |source: redis::RedisError, address: String| FanoutError {
        shard: index,
        address,
        source,
    };
    let client =
        redis::Client::open(url).map_err(|err| failed(err, "an invalid URL".to_owned()))?;
    let address = client.get_connection_info().addr().to_string();
    let attempt = async {
        // The subscriber first: one plain connection attempt, which fails fast on a bad address
        // or credentials (the connection manager would retry for seconds).
        drop(client.get_async_pubsub().await?);
        publisher(&client).await
    };
    let reason = match tokio::time::timeout(START_TIMEOUT, attempt).await {
        Ok(Ok(publisher)) => {
            return Ok(FirstContact {
                client,
                publisher: Some(publisher),
            });
        }
        Ok(Err(err)) if !unreachable(&err) => return Err(failed(err, address)),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {START_TIMEOUT:?}"),
    };
    tracing::warn!(
        shard = index,
        %address,
        error = %reason,
        "redis shard unreachable at start; connecting in the background, its conversations \
         cross nodes once it is up"
    );
    Ok(FirstContact {
        client,
        publisher: None,
    })
}

/// Longest a publish pipeline may wait for Redis's answer. redis-rs's default (500 ms) is
/// shorter than a busy moment of a Redis that is also taking a reconnect storm's `SUBSCRIBE`s
/// with its node starved of CPU; a pipeline timed out there is counted as lost and repaired,
/// although Redis most likely ran it.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// A shard's publisher connection (reconnecting by itself once made).
async fn publisher(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config =
        redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(PUBLISH_TIMEOUT));
    client.get_connection_manager_with_config(config).await
}

/// Whether `err` says the server could not be reached (worth retrying), rather than that it
/// refused us.
fn unreachable(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
}

/// Reconnect delays, without end: doubling from 100 ms, each plus a random part of up to
/// itself (backon's jitter), so at most [`MAX_BACKOFF`].
pub(super) fn reconnect_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(MAX_BACKOFF / 2)
        .with_jitter()
        .without_max_times()
}

/// Connects shard `index`'s publisher, retrying with [`reconnect_policy`]; what is queued for
/// the shard meanwhile is dropped and counted (`redis_error`, as publishes to a lost shard):
/// the receivers fill the gap from storage once the shard is up. `None` when the fan-out stops.
async fn connect_publisher(
    fanout: &RedisFanout,
    index: usize,
    client: &redis::Client,
    rx: &mut mpsc::Receiver<(String, Vec<u8>)>,
) -> Option<ConnectionManager> {
    let shard = &fanout.shards[index];
    let mut delays = reconnect_policy().build();
    loop {
        let attempt = async {
            match publisher(client).await {
                Ok(publisher) => Some(publisher),
                Err(err) => {
                    tracing::debug!(shard = index, error = %err, "redis publisher unavailable");
                    tokio::time::sleep(delays.next().unwrap_or(MAX_BACKOFF)).await;
                    None
                }
            }
        };
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                _ = fanout.stop.cancelled() => return None,
                connected = &mut attempt => match connected {
                    Some(publisher) => {
                        tracing::info!(shard = index, "redis publisher connected");
                        return Some(publisher);
                    }
                    None => break,
                },
                next = rx.recv() => match next {
                    Some((channel, payload)) => shard.lost("redis_error", [(channel.as_str(), payload.as_slice())]),
                    None => return None,
                },
            }
        }
    }
}

/// Most messages published in one pipeline (one round trip to Redis).
const PIPELINE: usize = 512;

/// How often a publisher with nothing to publish checks whether Redis answers again, when
/// dropped messages wait for a repair.
const REPAIR_RETRY: Duration = Duration::from_secs(2);

/// Publishes shard `index`'s queue, whatever has accumulated in one pipeline, so a burst (a
/// reconnect storm's presence, a busy room) costs one round trip per batch rather than per
/// message; connects its publisher first when the shard was unreachable at start (the
/// connection manager reconnects by itself after that). What was dropped before (full queue,
/// Redis error) is repaired after the next batch that goes through ([`repair`]), or, with
/// nothing to publish, once Redis answers a `PING` (checked every [`REPAIR_RETRY`]: the beats,
/// which used to be that next batch, have a connection of their own).
pub(super) async fn publish_loop(
    fanout: Arc<RedisFanout>,
    index: usize,
    client: redis::Client,
    publisher: Option<ConnectionManager>,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    inbound: mpsc::Sender<Inbound>,
) {
    let shard = &fanout.shards[index];
    let connected = match publisher {
        Some(publisher) => Some(publisher),
        None => connect_publisher(&fanout, index, &client, &mut rx).await,
    };
    let Some(mut conn) = connected else {
        return;
    };
    let mut batch = Vec::with_capacity(PIPELINE);
    let mut retry = tokio::time::interval(REPAIR_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = fanout.stop.cancelled() => return,
            received = rx.recv_many(&mut batch, PIPELINE) => {
                if received == 0 {
                    return;
                }
            }
            _ = retry.tick() => {
                if !shard.has_lost() {
                    continue;
                }
                let answered = redis::cmd("PING").query_async::<()>(&mut conn).await.is_ok();
                if answered && !repair(&fanout, shard, &mut conn, &inbound).await {
                    return;
                }
                continue;
            }
        }
        let mut pipe = redis::pipe();
        for (channel, payload) in &batch {
            pipe.publish(channel, payload).ignore();
        }
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => {
                shard.metrics.published.increment(batch.len() as u64);
                if !repair(&fanout, shard, &mut conn, &inbound).await {
                    return;
                }
            }
            Err(err) => {
                shard.lost(
                    "redis_error",
                    batch.iter().map(|(c, p)| (c.as_str(), p.as_slice())),
                );
                tracing::warn!(shard = index, error = %err, "redis publish failed; receivers will catch up from storage");
            }
        }
        batch.clear();
    }
}

/// Repairs what the shard's dropped messages left the other nodes missing, now that a publish
/// went through: a `resync` per room with lost events, the lost user nudges again, and the
/// presence of rooms with lost presence messages synced again (through the hub, which knows the
/// users). A repair that fails is kept for the next batch. False when the hub is gone.
async fn repair(
    fanout: &RedisFanout,
    shard: &Shard,
    conn: &mut ConnectionManager,
    inbound: &mpsc::Sender<Inbound>,
) -> bool {
    let Some(mut lost) = shard.take_lost() else {
        return true;
    };
    let mut pipe = redis::pipe();
    let resync = message(&Header::new(&fanout.node, MessageType::Resync), "");
    for channel in &lost.events {
        pipe.publish(channel, &resync).ignore();
    }
    for (tenant, user) in &lost.users {
        let header = Header {
            user: Some(Cow::Borrowed(user)),
            ..Header::new(&fanout.node, MessageType::User)
        };
        pipe.publish(NODES_CHANNEL, message(&header, tenant))
            .ignore();
    }
    let sent = lost.events.len() + lost.users.len();
    if sent > 0 {
        if let Err(err) = pipe.query_async::<()>(conn).await {
            tracing::warn!(shard = shard.index, error = %err, "redis fan-out repair failed; retried after the next publish");
            shard.restore_lost(lost);
            return true;
        }
        shard.metrics.published.increment(sent as u64);
        shard.metrics.repairs.increment(sent as u64);
    }
    let presence: Vec<_> = lost.presence.drain().collect();
    if presence.is_empty() {
        return true;
    }
    shard.metrics.repairs.increment(presence.len() as u64);
    hand_over(inbound, Inbound::Followed(presence)).await
}
