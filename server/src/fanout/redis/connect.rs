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
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::{FanoutError, MAX_BACKOFF, RedisFanout};

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
        client.get_connection_manager().await
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
            match client.get_connection_manager().await {
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
                    Some(_) => shard.dropped("redis_error"),
                    None => return None,
                },
            }
        }
    }
}

/// Publishes shard `index`'s queue; connects its publisher first when the shard was
/// unreachable at start (the connection manager reconnects by itself after that).
pub(super) async fn publish_loop(
    fanout: Arc<RedisFanout>,
    index: usize,
    client: redis::Client,
    publisher: Option<ConnectionManager>,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
) {
    let shard = &fanout.shards[index];
    let connected = match publisher {
        Some(publisher) => Some(publisher),
        None => connect_publisher(&fanout, index, &client, &mut rx).await,
    };
    let Some(mut conn) = connected else {
        return;
    };
    loop {
        let (channel, payload) = tokio::select! {
            _ = fanout.stop.cancelled() => return,
            next = rx.recv() => match next {
                Some(item) => item,
                None => return,
            },
        };
        match conn.publish::<_, _, i64>(&channel, payload).await {
            Ok(_) => shard.metrics.published.increment(1),
            Err(err) => {
                shard.dropped("redis_error");
                tracing::warn!(shard = index, error = %err, "redis publish failed; receivers will fill the gap from storage");
            }
        }
    }
}
