//! The Kafka transport of the event stream (cargo feature `kafka`).
//!
//! An idempotent rdkafka [`ThreadedProducer`] (`enable.idempotence`, `acks=all`, retries until
//! `message.timeout.ms`): `send` only appends to librdkafka's bounded local buffer and never
//! blocks, and the producer's own thread polls for delivery reports, which feed the metrics.
//! An event the buffer cannot take (a long outage), or whose delivery fails, goes into the
//! [`Backlog`] (with a rate-limited warning) and is published again from the store once the
//! brokers answer: chat never waits for Kafka, and the stream misses nothing.
//!
//! Records are keyed by conversation id with the Java-compatible `murmur2_random` partitioner,
//! so that a conversation's events land on one partition, in seq order, whichever client
//! library produces or reads them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use metrics::{Counter, counter};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};

use super::backlog::{Backlog, Retry};
use super::{EventStream, KafkaUrl, LogLimiter, Record, WARN_EVERY};
use crate::metrics::{
    EVENTS_DROPPED_TOTAL as DROPPED_TOTAL, EVENTS_FAILED_TOTAL as FAILED_TOTAL,
    EVENTS_PRODUCER_RESTARTS_TOTAL as PRODUCER_RESTARTS_TOTAL,
    EVENTS_PUBLISHED_TOTAL as PUBLISHED_TOTAL,
};

/// Producer settings; a `kafka://…?property=value` URL overrides any of them.
const DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "confab"),
    // No duplicates or reordering on retries; implies acks=all and bounded in-flight requests.
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // Same key → same partition as Java clients (librdkafka's default hashes differently).
    ("partitioner", "murmur2_random"),
    // The bounded local buffer: past it, events go to the backlog instead of blocking the writer.
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "65536"),
    // How long an event may wait for the brokers (outage included) before it counts as failed
    // (and goes to the backlog).
    ("message.timeout.ms", "120000"),
    ("linger.ms", "5"),
];

/// How long the start-up check waits for the brokers (in the background).
const STARTUP_CHECK: Duration = Duration::from_secs(10);

/// Delivery reports and client errors, on the producer's polling thread.
struct Reports {
    published: Counter,
    backlog: Arc<Backlog>,
    /// Set when the producer failed for good: [`KafkaStream::maintain`] replaces it.
    fatal: Arc<AtomicBool>,
    failed_log: LogLimiter,
    error_log: LogLimiter,
    log_limit: LogLimiter,
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(&self.log_limit, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            // E.g. an idempotent producer fenced after timeouts: it fails every event from
            // now on (into the backlog), so it is replaced by a new one.
            tracing::error!(
                error = %error,
                reason,
                "kafka producer failed for good; replacing it (its events go to the backlog)"
            );
            self.fatal.store(true, Ordering::Release);
            return;
        }
        if let Some(suppressed) = self.error_log.check() {
            tracing::warn!(error = %error, reason, suppressed, "kafka event stream unavailable");
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Retry>;

    fn delivery(&self, result: &DeliveryResult<'_>, retry: Box<Retry>) {
        let Err((error, _)) = result else {
            self.published.increment(1);
            return;
        };
        let reason = match error.rdkafka_error_code() {
            Some(code) => format!("{code:?}"),
            None => "other".to_owned(),
        };
        counter!(FAILED_TOTAL, "reason" => reason).increment(1);
        self.backlog.add(*retry);
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
        ) {
            // Every later event would fail the same way: the producer must be replaced.
            self.fatal.store(true, Ordering::Release);
        }
        if let Some(suppressed) = self.failed_log.check() {
            tracing::warn!(
                error = %error,
                suppressed,
                "kafka event delivery failed; the event goes to the backlog"
            );
        }
    }
}

/// librdkafka's own log, into `tracing`. A broker outage makes it log each failed reconnect as
/// an error; for Confab that is a degraded side channel, so those become rate-limited warnings.
pub(crate) fn forward_log(
    limit: &LogLimiter,
    level: RDKafkaLogLevel,
    facility: &str,
    message: &str,
) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => {
            if let Some(suppressed) = limit.check() {
                tracing::warn!(target: "librdkafka", facility, suppressed, "{message}");
            }
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", facility, "{message}");
        }
    }
}

/// The event stream's Kafka producer.
pub(super) struct KafkaStream {
    /// Replaced after a fatal error ([`KafkaStream::maintain`]).
    producer: RwLock<ThreadedProducer<Reports>>,
    config: ClientConfig,
    fatal: Arc<AtomicBool>,
    topic: String,
    closed: AtomicBool,
    backlog: Arc<Backlog>,
    full_log: LogLimiter,
    error_log: LogLimiter,
}

impl KafkaStream {
    /// Creates the producer (no network round trip: an unreachable cluster is an outage like
    /// any other) and checks the brokers and the topic in the background.
    pub(super) fn start(
        url: &KafkaUrl,
        topic: &str,
        backlog: Arc<Backlog>,
    ) -> Result<KafkaStream, KafkaError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &url.brokers);
        for (key, value) in DEFAULTS {
            config.set(*key, *value);
        }
        for (key, value) in &url.properties {
            config.set(key, value);
        }
        let fatal = Arc::new(AtomicBool::new(false));
        let producer = create(&config, &backlog, &fatal)?;
        spawn_startup_check(producer.clone(), topic.to_owned(), url.brokers.clone());
        tracing::info!(brokers = %url.brokers, %topic, "kafka event stream started");
        Ok(KafkaStream {
            producer: RwLock::new(producer),
            config,
            fatal,
            topic: topic.to_owned(),
            closed: AtomicBool::new(false),
            backlog,
            full_log: LogLimiter::new(WARN_EVERY),
            error_log: LogLimiter::new(WARN_EVERY),
        })
    }

    fn producer(&self) -> ThreadedProducer<Reports> {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn enqueue(
        &self,
        producer: &ThreadedProducer<Reports>,
        record: &Record,
    ) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "type",
                value: Some(record.kind),
            })
            .insert(Header {
                key: "tenant",
                value: Some(record.tenant.as_str()),
            });
        let retry = Box::new(Retry::of(record));
        let message = BaseRecord::<str, [u8], Box<Retry>>::with_opaque_to(&self.topic, retry)
            .key(record.key.as_str())
            .payload(record.payload.as_slice())
            .timestamp(record.ts)
            .headers(headers);
        producer.send(message).map_err(|(error, _)| error)
    }
}

impl EventStream for KafkaStream {
    fn send(&self, records: Vec<Record>) {
        if self.closed.load(Ordering::Acquire) {
            // Saved with the backlog at shutdown.
            for record in &records {
                self.backlog.add(Retry::of(record));
            }
            return;
        }
        let producer = self.producer();
        for record in &records {
            match self.enqueue(&producer, record) {
                Ok(()) => {}
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    self.backlog.add(Retry::of(record));
                    if let Some(suppressed) = self.full_log.check() {
                        tracing::warn!(
                            buffered = producer.in_flight_count(),
                            backlog = self.backlog.len(),
                            suppressed,
                            "kafka buffer full: events go to the backlog"
                        );
                    }
                }
                Err(error) => {
                    counter!(DROPPED_TOTAL, "reason" => "error").increment(1);
                    if let Some(suppressed) = self.error_log.check() {
                        tracing::warn!(error = %error, suppressed, "dropping events: kafka refused them");
                    }
                }
            }
        }
    }

    fn in_flight(&self) -> usize {
        usize::try_from(self.producer().in_flight_count()).unwrap_or(0)
    }

    fn maintain(&self) {
        let failed = self.fatal.swap(false, Ordering::AcqRel)
            || self.producer().client().fatal_error().is_some();
        if !failed || self.closed.load(Ordering::Acquire) {
            return;
        }
        let fresh = match create(&self.config, &self.backlog, &self.fatal) {
            Ok(fresh) => fresh,
            Err(error) => {
                tracing::error!(error = %error, "cannot create a new kafka producer; retrying");
                self.fatal.store(true, Ordering::Release);
                return;
            }
        };
        let old = std::mem::replace(
            &mut *self
                .producer
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        // Whatever the old one still holds fails (purged) into the backlog.
        old.purge(PurgeConfig::default().queue().inflight());
        let _ = old.flush(Duration::from_secs(1));
        counter!(PRODUCER_RESTARTS_TOTAL).increment(1);
        tracing::info!("kafka producer replaced");
    }

    fn close(&self, timeout: Duration) {
        self.closed.store(true, Ordering::Release);
        let producer = self.producer();
        let pending = producer.in_flight_count();
        if pending == 0 {
            return;
        }
        tracing::info!(pending, "flushing the kafka event stream");
        if let Err(error) = producer.flush(timeout) {
            let left = producer.in_flight_count();
            tracing::warn!(
                error = %error,
                left,
                "kafka event stream not flushed in time; the undelivered events go to the backlog"
            );
            // Their delivery reports (purged) count them as failed and put them in the backlog.
            producer.purge(PurgeConfig::default().queue().inflight());
            let _ = producer.flush(Duration::from_millis(500));
        }
    }
}

/// A producer reporting to `backlog` and `fatal`.
fn create(
    config: &ClientConfig,
    backlog: &Arc<Backlog>,
    fatal: &Arc<AtomicBool>,
) -> Result<ThreadedProducer<Reports>, KafkaError> {
    let reports = Reports {
        published: counter!(PUBLISHED_TOTAL),
        backlog: backlog.clone(),
        fatal: fatal.clone(),
        failed_log: LogLimiter::new(WARN_EVERY),
        error_log: LogLimiter::new(WARN_EVERY),
        log_limit: LogLimiter::new(WARN_EVERY),
    };
    config.create_with_context(reports)
}

/// Fetches the topic's metadata once, off the runtime, to tell the operator early whether
/// events can flow (brokers that auto-create topics create it here).
fn spawn_startup_check(producer: ThreadedProducer<Reports>, topic: String, brokers: String) {
    let check = move || match producer
        .client()
        .fetch_metadata(Some(&topic), STARTUP_CHECK)
    {
        Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(found) if found.error().is_none() => tracing::info!(
                %brokers,
                %topic,
                partitions = found.partitions().len(),
                "kafka event stream connected"
            ),
            found => tracing::warn!(
                %brokers,
                %topic,
                error = ?found.and_then(|t| t.error()),
                "kafka event topic unavailable; create it (events are buffered, then dropped)"
            ),
        },
        Err(error) => tracing::warn!(
            %brokers,
            error = %error,
            "kafka unreachable at start; events are buffered until it is (then dropped when full)"
        ),
    };
    if let Err(error) = std::thread::Builder::new()
        .name("confab-kafka-check".into())
        .spawn(check)
    {
        tracing::warn!(error = %error, "cannot check the kafka brokers at start");
    }
}
