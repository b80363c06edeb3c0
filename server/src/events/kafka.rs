//! The Kafka transport of the event stream (cargo feature `kafka`).
//!
//! An idempotent rdkafka [`ThreadedProducer`] (`enable.idempotence`, `acks=all`, retries until
//! `message.timeout.ms`): `send` only appends to librdkafka's bounded local buffer and never
//! blocks, and the producer's own thread polls for delivery reports, which feed the metrics.
//! When the buffer is full (a long outage) events are dropped and counted, with a rate-limited
//! `dropping events: kafka buffer full` warning: chat never waits for Kafka.
//!
//! Records are keyed by conversation id with the Java-compatible `murmur2_random` partitioner,
//! so that a conversation's events land on one partition, in seq order, whichever client
//! library produces or reads them.

use std::sync::atomic::{AtomicBool, Ordering};
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

use super::{EventStream, KafkaUrl, LogLimiter, Record, WARN_EVERY};
use crate::metrics::{
    EVENTS_DROPPED_TOTAL as DROPPED_TOTAL, EVENTS_FAILED_TOTAL as FAILED_TOTAL,
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
    // The bounded local buffer: past it, events are dropped instead of blocking the writer.
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "65536"),
    // How long an event may wait for the brokers (outage included) before it counts as failed.
    ("message.timeout.ms", "120000"),
    ("linger.ms", "5"),
];

/// How long the start-up check waits for the brokers (in the background).
const STARTUP_CHECK: Duration = Duration::from_secs(10);

/// Delivery reports and client errors, on the producer's polling thread.
struct Reports {
    published: Counter,
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
            tracing::error!(
                error = %error,
                reason,
                "kafka producer failed for good; events are dropped until this node restarts"
            );
            return;
        }
        if let Some(suppressed) = self.error_log.check() {
            tracing::warn!(error = %error, reason, suppressed, "kafka event stream unavailable");
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Err((error, _)) = result else {
            self.published.increment(1);
            return;
        };
        let reason = match error.rdkafka_error_code() {
            Some(code) => format!("{code:?}"),
            None => "other".to_owned(),
        };
        counter!(FAILED_TOTAL, "reason" => reason).increment(1);
        if let Some(suppressed) = self.failed_log.check() {
            tracing::warn!(
                error = %error,
                suppressed,
                "kafka event delivery failed; the event is missing from the stream"
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
    producer: ThreadedProducer<Reports>,
    topic: String,
    closed: AtomicBool,
    dropped_full: Counter,
    full_log: LogLimiter,
    error_log: LogLimiter,
}

impl KafkaStream {
    /// Creates the producer (no network round trip: an unreachable cluster is an outage like
    /// any other) and checks the brokers and the topic in the background.
    pub(super) fn start(url: &KafkaUrl, topic: &str) -> Result<KafkaStream, KafkaError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &url.brokers);
        for (key, value) in DEFAULTS {
            config.set(*key, *value);
        }
        for (key, value) in &url.properties {
            config.set(key, value);
        }
        let reports = Reports {
            published: counter!(PUBLISHED_TOTAL),
            failed_log: LogLimiter::new(WARN_EVERY),
            error_log: LogLimiter::new(WARN_EVERY),
            log_limit: LogLimiter::new(WARN_EVERY),
        };
        let producer: ThreadedProducer<Reports> = config.create_with_context(reports)?;
        spawn_startup_check(producer.clone(), topic.to_owned(), url.brokers.clone());
        tracing::info!(brokers = %url.brokers, %topic, "kafka event stream started");
        Ok(KafkaStream {
            producer,
            topic: topic.to_owned(),
            closed: AtomicBool::new(false),
            dropped_full: counter!(DROPPED_TOTAL, "reason" => "buffer_full"),
            full_log: LogLimiter::new(WARN_EVERY),
            error_log: LogLimiter::new(WARN_EVERY),
        })
    }

    fn enqueue(&self, record: &Record) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "type",
                value: Some(record.kind),
            })
            .insert(Header {
                key: "tenant",
                value: Some(record.tenant.as_str()),
            });
        let message = BaseRecord::<str, [u8]>::to(&self.topic)
            .key(record.key.as_str())
            .payload(record.payload.as_slice())
            .timestamp(record.ts)
            .headers(headers);
        self.producer.send(message).map_err(|(error, _)| error)
    }
}

impl EventStream for KafkaStream {
    fn send(&self, records: Vec<Record>) {
        if self.closed.load(Ordering::Acquire) {
            counter!(DROPPED_TOTAL, "reason" => "closed").increment(records.len() as u64);
            return;
        }
        for record in &records {
            match self.enqueue(record) {
                Ok(()) => {}
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    self.dropped_full.increment(1);
                    if let Some(suppressed) = self.full_log.check() {
                        tracing::warn!(
                            buffered = self.producer.in_flight_count(),
                            suppressed,
                            "dropping events: kafka buffer full"
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

    fn close(&self, timeout: Duration) {
        self.closed.store(true, Ordering::Release);
        let pending = self.producer.in_flight_count();
        if pending == 0 {
            return;
        }
        tracing::info!(pending, "flushing the kafka event stream");
        if let Err(error) = self.producer.flush(timeout) {
            let left = self.producer.in_flight_count();
            tracing::warn!(
                error = %error,
                left,
                "kafka event stream not flushed in time; giving up the undelivered events"
            );
            // Their delivery reports (purged) count them as failed.
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let _ = self.producer.flush(Duration::from_millis(500));
        }
    }
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
