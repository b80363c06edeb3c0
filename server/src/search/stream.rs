//! The search index follows the event stream (cargo feature `kafka`, with `--events kafka://…`).
//!
//! In a cluster, the store's sink of a node sees only what that node commits; the stream holds
//! what every node commits. So each node reads the whole topic into its own index, on a thread
//! of its own (rdkafka polling and tantivy both block):
//!
//! - One [`BaseConsumer`] per node, in a consumer group of its own (`search_consumer_group`, by
//!   default `confab-search-<id>` with the id kept in the search dir), assigned *every*
//!   partition of the topic: each node needs every event, so there is nothing to balance and no
//!   group join to wait for; the group only keeps the node's committed offsets. Partitions added
//!   later are picked up within [`REFRESH_PARTITIONS`].
//! - Records are decoded with [`crate::events::decode`] and applied to the index in batches;
//!   the index is committed every `search_commit_interval`, and only then the offsets of what it
//!   holds (`enable.auto.commit=false`). A crash replays from the last committed offsets, which
//!   [`SearchIndex::apply`] tolerates (an event applied twice changes nothing).
//! - A record that does not decode goes to the dead-letter topic with its key, value, headers
//!   and timestamp, plus headers saying why (`confab-dlq-reason`, `confab-dlq-error`) and where it
//!   came from (`confab-dlq-source`: topic/partition/offset, `confab-dlq-group`); its offset is
//!   committed once the dead letter is delivered. Every node reads every record, so each node
//!   dead-letters a bad record once.
//! - Lag, from librdkafka's statistics every second: events not read (high watermark − position,
//!   summed over the partitions) and the age of the newest event read while behind.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use confab_search::{IndexEvent, SearchIndex};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::events::decode::{self, DecodeError, Decoded};
use crate::events::kafka::forward_log;
use crate::events::{KafkaUrl, LogLimiter};

/// Consumer settings; a `kafka://…?property=value` URL overrides any of them.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "confab-search"),
    // Offsets are committed by hand, after the index commit that holds their events.
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    // A new group (a new node, or a new search dir) reads the whole retained topic.
    ("auto.offset.reset", "earliest"),
    // Search freshness: a fetch returns within 100 ms even when there is little to read.
    ("fetch.wait.max.ms", "100"),
    // The lag metrics.
    ("statistics.interval.ms", "1000"),
];

/// Dead-letter producer settings; the URL overrides them too.
const DEAD_LETTER_DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "confab-search-dlq"),
    ("acks", "all"),
    ("linger.ms", "5"),
];

/// How long a poll waits for a first record.
const POLL: Duration = Duration::from_millis(100);
/// Records applied to the index at once, at most.
const MAX_BATCH: usize = 1000;
/// How often the topic's partitions are looked up once some are assigned.
const REFRESH_PARTITIONS: Duration = Duration::from_secs(30);
/// How often they are looked up until the topic exists.
const WAIT_FOR_TOPIC: Duration = Duration::from_secs(1);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a commit waits for the dead letters to be delivered before trying again later.
const DEAD_LETTER_FLUSH: Duration = Duration::from_secs(2);
/// Pause before applying a batch again after the index refused it.
const RETRY_APPLY: Duration = Duration::from_secs(1);
/// Warnings are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// The file in the search dir that keeps the generated consumer group.
const GROUP_FILE: &str = "stream-consumer-group";

/// Why the follower cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot create the search index's kafka clients: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot keep the search index's consumer group in {path}: {source}")]
    Group {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the search index's stream thread: {0}")]
    Thread(std::io::Error),
}

/// What the follower reads and where it sends what it cannot read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: KafkaUrl,
    pub topic: String,
    pub dead_letter_topic: String,
    pub group: String,
    pub commit_interval: Duration,
}

/// The consumer group kept in `search_dir` (`confab-search-<uuid>`), generated on first use.
pub fn default_group(search_dir: &Path) -> Result<String, StreamError> {
    let path = search_dir.join(GROUP_FILE);
    let failed = |source| StreamError::Group {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(group) if !group.trim().is_empty() => return Ok(group.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(failed(err)),
    }
    let group = format!("confab-search-{}", uuid::Uuid::new_v4().simple());
    // Written whole or not at all: a half-written id would be another group.
    let partial = search_dir.join(format!("{GROUP_FILE}.tmp"));
    std::fs::write(&partial, &group).map_err(failed)?;
    std::fs::rename(&partial, &path).map_err(failed)?;
    Ok(group)
}

/// How long [`Follower::stop`] waits for the last commits (the brokers may be down).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The running follower. [`Follower::stop`] commits what it applied and waits for its thread.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    /// Disconnected when the thread ends.
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Creates the consumer and the dead-letter producer (no network round trip: brokers that
    /// are down are waited for like any outage) and starts the thread.
    pub fn start(settings: Settings, index: Arc<SearchIndex>) -> Result<Follower, StreamError> {
        let consumer: BaseConsumer<Stats> = client_config(&settings.url, CONSUMER_DEFAULTS)
            .set("group.id", &settings.group)
            .create_with_context(Stats::new(&settings.topic))?;
        let dead_letters: ThreadedProducer<DeadLetters> =
            client_config(&settings.url, DEAD_LETTER_DEFAULTS).create_with_context(
                DeadLetters {
                    failed_log: LogLimiter::new(WARN_EVERY),
                    log_limit: LogLimiter::new(WARN_EVERY),
                },
            )?;
        let stop = Arc::new(AtomicBool::new(false));
        let (finished, done) = std::sync::mpsc::channel::<()>();
        tracing::info!(
            topic = %settings.topic,
            group = %settings.group,
            dead_letter_topic = %settings.dead_letter_topic,
            "search index following the event stream"
        );
        let follow = Follow {
            consumer,
            dead_letters,
            index,
            settings,
            stop: stop.clone(),
            partitions: BTreeSet::new(),
            refresh_at: Instant::now(),
            uncommitted: BTreeMap::new(),
            pending_since: None,
            dirty: false,
            dead_lettered: Cell::new(false),
            warn_log: LogLimiter::new(WARN_EVERY),
        };
        let thread = std::thread::Builder::new()
            .name("confab-search-stream".to_owned())
            .spawn(move || {
                follow.run();
                drop(finished);
            })
            .map_err(StreamError::Thread)?;
        Ok(Follower {
            stop,
            done,
            thread: Some(thread),
        })
    }

    /// Stops reading, commits the index and the offsets of what it holds, and waits for the
    /// thread. Blocks: call it off the async runtime.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Err(RecvTimeoutError::Timeout) = self.done.recv_timeout(STOP_TIMEOUT) {
            // Left behind: its events are in the index or replayed from the stream next time.
            tracing::warn!("search index's stream reader did not stop in time; not waiting");
            return;
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the search index's stream thread panicked");
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn client_config(url: &KafkaUrl, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &url.brokers);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &url.properties {
        config.set(key, value);
    }
    config
}

/// Records read and not applied yet.
#[derive(Default)]
struct Batch {
    events: Vec<IndexEvent>,
    /// The next offset of each partition once this batch is applied.
    offsets: BTreeMap<i32, i64>,
}

/// The follower's thread.
struct Follow {
    consumer: BaseConsumer<Stats>,
    dead_letters: ThreadedProducer<DeadLetters>,
    index: Arc<SearchIndex>,
    settings: Settings,
    stop: Arc<AtomicBool>,
    partitions: BTreeSet<i32>,
    refresh_at: Instant,
    /// Next offset per partition of what was applied (or dead-lettered) and not committed.
    uncommitted: BTreeMap<i32, i64>,
    /// When `uncommitted` stopped being empty (or the last commit attempt failed).
    pending_since: Option<Instant>,
    /// Events applied since the last index commit.
    dirty: bool,
    /// Dead letters sent since the last offset commit.
    dead_lettered: Cell<bool>,
    warn_log: LogLimiter,
}

impl Follow {
    fn run(mut self) {
        while !self.stopping() {
            self.refresh_partitions();
            let batch = self.poll_batch();
            self.apply(batch);
            if self
                .pending_since
                .is_some_and(|since| since.elapsed() >= self.settings.commit_interval)
            {
                self.commit();
            }
        }
        self.commit();
        tracing::info!("search index stopped following the event stream");
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Assigns the topic's partitions not assigned yet, from their committed offsets.
    fn refresh_partitions(&mut self) {
        if Instant::now() < self.refresh_at {
            return;
        }
        let topic = self.settings.topic.as_str();
        let found: Vec<i32> = match self.consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .filter(|id| !self.partitions.contains(id))
                .collect(),
            Err(error) => {
                if let Some(suppressed) = self.warn_log.check() {
                    tracing::warn!(%error, suppressed, "search index cannot read the event topic");
                }
                Vec::new()
            }
        };
        let waiting = self.partitions.is_empty() && found.is_empty();
        self.refresh_at = Instant::now()
            + if waiting {
                WAIT_FOR_TOPIC
            } else {
                REFRESH_PARTITIONS
            };
        if found.is_empty() {
            return;
        }
        let mut assignment = TopicPartitionList::new();
        for partition in &found {
            if let Err(error) = assignment.add_partition_offset(topic, *partition, Offset::Stored) {
                tracing::error!(%error, partition, "cannot list a partition to read");
                return;
            }
        }
        match self.consumer.incremental_assign(&assignment) {
            Ok(()) => {
                self.partitions.extend(found);
                tracing::info!(
                    topic,
                    partitions = self.partitions.len(),
                    group = %self.settings.group,
                    "search index reading the event stream"
                );
            }
            Err(error) => tracing::warn!(%error, "search index cannot read new partitions"),
        }
    }

    /// Reads what is there (waiting up to [`POLL`] for a first record), up to [`MAX_BATCH`].
    fn poll_batch(&self) -> Batch {
        let mut batch = Batch::default();
        let mut wait = POLL;
        for _ in 0..MAX_BATCH {
            if self.stopping() {
                break;
            }
            let Some(polled) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match polled {
                Ok(message) => self.take(&message, &mut batch),
                Err(error) => {
                    if let Some(suppressed) = self.warn_log.check() {
                        tracing::warn!(%error, suppressed, "search index cannot read the event stream");
                    }
                    break;
                }
            }
        }
        batch
    }

    fn take(&self, message: &BorrowedMessage<'_>, batch: &mut Batch) {
        batch
            .offsets
            .insert(message.partition(), message.offset() + 1);
        match decode::decode(message.payload()) {
            Ok(Decoded::Event(event)) => {
                self.consumer
                    .context()
                    .newest_ts
                    .fetch_max(event.ts, Ordering::Relaxed);
                batch.events.push(super::stream_index_event(*event));
            }
            Ok(Decoded::Media) => {}
            Err(error) => self.dead_letter(message, &error),
        }
    }

    /// Applies a batch (again and again while the index refuses it: its events must not be
    /// skipped), then counts its offsets as ready to commit.
    fn apply(&mut self, batch: Batch) {
        if batch.offsets.is_empty() {
            return;
        }
        while !batch.events.is_empty() {
            // A copy per attempt: `apply` takes the events' text, and a refused batch is
            // applied again whole (a partial one again is harmless).
            match self.index.apply(batch.events.clone()) {
                Ok(changed) => {
                    crate::metrics::search_indexed(changed);
                    self.dirty = true;
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot index events of the stream; retrying");
                    if self.stopping() {
                        return;
                    }
                    std::thread::sleep(RETRY_APPLY);
                }
            }
        }
        self.uncommitted.extend(batch.offsets);
        self.pending_since.get_or_insert_with(Instant::now);
    }

    /// Commits the index, waits for the dead letters, then commits the offsets.
    fn commit(&mut self) {
        if self.uncommitted.is_empty() {
            return;
        }
        // Tried again after an interval, whatever fails below.
        self.pending_since = Some(Instant::now());
        if self.dirty {
            let started = Instant::now();
            if let Err(error) = self.index.commit() {
                tracing::error!(%error, "cannot commit the search index");
                return;
            }
            crate::metrics::search_commit(started.elapsed());
            self.dirty = false;
        }
        if self.dead_lettered.get() {
            if let Err(error) = self.dead_letters.flush(DEAD_LETTER_FLUSH) {
                tracing::warn!(%error, "dead letters not delivered yet; offsets committed later");
                return;
            }
            self.dead_lettered.set(false);
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &self.uncommitted {
            let listed = offsets.add_partition_offset(
                &self.settings.topic,
                *partition,
                Offset::Offset(*next),
            );
            if let Err(error) = listed {
                tracing::error!(%error, partition, "cannot list an offset to commit");
                return;
            }
        }
        match self.consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => {
                self.uncommitted.clear();
                self.pending_since = None;
            }
            Err(error) => {
                if let Some(suppressed) = self.warn_log.check() {
                    tracing::warn!(%error, suppressed, "cannot commit the search index's offsets");
                }
            }
        }
    }

    /// Sends a record that cannot be indexed to the dead-letter topic, as it was, with why.
    fn dead_letter(&self, message: &BorrowedMessage<'_>, error: &DecodeError) {
        let reason = error.reason();
        crate::metrics::search_dead_lettered(reason);
        self.dead_lettered.set(true);
        let source = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        tracing::warn!(%error, reason, %source, "stream record not indexable: dead-lettered");
        let why = error.to_string();
        let mut headers = OwnedHeaders::new();
        for header in message.headers().into_iter().flat_map(|h| h.iter()) {
            headers = headers.insert(header);
        }
        for (key, value) in [
            ("confab-dlq-reason", reason),
            ("confab-dlq-error", why.as_str()),
            ("confab-dlq-source", source.as_str()),
            ("confab-dlq-group", self.settings.group.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record =
            BaseRecord::<[u8], [u8]>::to(&self.settings.dead_letter_topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(ts) = message.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        self.send_dead_letter(record, &source);
    }

    fn send_dead_letter(&self, mut record: BaseRecord<'_, [u8], [u8]>, source: &str) {
        loop {
            match self.dead_letters.send(record) {
                Ok(()) => return,
                // Backpressure: the buffer drains as the brokers take it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if !self.stopping() =>
                {
                    record = back;
                    std::thread::sleep(POLL);
                }
                Err((error, _)) => {
                    tracing::error!(%error, %source, "cannot send a dead letter; the record is skipped");
                    return;
                }
            }
        }
    }
}

/// The consumer's context: librdkafka's log and errors, and the lag from its statistics.
struct Stats {
    topic: String,
    /// Commit time of the newest event read (ms since the epoch; 0 before the first).
    newest_ts: AtomicI64,
    log_limit: LogLimiter,
    error_log: LogLimiter,
}

impl Stats {
    fn new(topic: &str) -> Stats {
        Stats {
            topic: topic.to_owned(),
            newest_ts: AtomicI64::new(0),
            log_limit: LogLimiter::new(WARN_EVERY),
            error_log: LogLimiter::new(WARN_EVERY),
        }
    }
}

impl ClientContext for Stats {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(&self.log_limit, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(suppressed) = self.error_log.check() {
            tracing::warn!(%error, reason, suppressed, "event stream unavailable to the search index");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let behind = lag_events(topic.partitions.values().map(|p| {
            let position = if p.app_offset >= 0 {
                p.app_offset
            } else {
                p.next_offset
            };
            (p.partition, position, p.hi_offset)
        }));
        let newest = self.newest_ts.load(Ordering::Relaxed);
        let seconds = if behind == 0 || newest == 0 {
            0.0
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
                });
            (now.saturating_sub(newest).max(0) as f64) / 1000.0
        };
        crate::metrics::search_consumer_lag(behind, seconds);
    }
}

impl ConsumerContext for Stats {}

/// Events not read yet: high watermark − position, summed over the partitions (given as
/// `(partition, position, high watermark)`; librdkafka says -1 for "none", and its internal
/// partition -1 is no partition of the topic).
fn lag_events(partitions: impl Iterator<Item = (i32, i64, i64)>) -> u64 {
    partitions
        .filter(|(partition, position, high)| *partition >= 0 && *position >= 0 && *high >= 0)
        .map(|(_, position, high)| u64::try_from(high - position).unwrap_or(0))
        .sum()
}

/// The dead-letter producer's context: failed deliveries are logged.
struct DeadLetters {
    failed_log: LogLimiter,
    log_limit: LogLimiter,
}

impl ClientContext for DeadLetters {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(&self.log_limit, level, facility, message);
    }
}

impl ProducerContext for DeadLetters {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result
            && let Some(suppressed) = self.failed_log.check()
        {
            tracing::error!(%error, suppressed, "a dead letter was not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_sums_what_is_left_per_partition() {
        assert_eq!(lag_events([(0, 5, 9), (1, 3, 3), (2, 0, 4)].into_iter()), 8);
        // Unknown positions or watermarks, librdkafka's partition -1, and a watermark below
        // the position (seen with some brokers) count for nothing.
        assert_eq!(
            lag_events([(-1, 0, 9), (0, -1001, 9), (1, 5, -1), (2, 7, 6)].into_iter()),
            0
        );
    }

    #[test]
    fn the_generated_group_is_kept_in_the_search_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let group = default_group(dir.path()).expect("generated");
        assert!(group.starts_with("confab-search-"), "{group}");
        assert_eq!(default_group(dir.path()).expect("read back"), group);
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(default_group(other.path()).expect("another"), group);
    }
}
