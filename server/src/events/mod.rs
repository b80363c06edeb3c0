//! The event stream: every committed durable event, published outside the process as a
//! versioned JSON envelope keyed by conversation id (so order holds per conversation). The
//! format is documented in `docs/events.md`.
//!
//! - [`rendered`]: committed events with their frame rendered once ([`Rendered`]), and the
//!   sinks that take them ([`RenderedSink`]: the hub, the tee).
//! - [`Envelope`]: the record's JSON. The event's `ServerFrame` is already JSON text
//!   ([`Rendered::frame`]): it is embedded as a [`RawValue`], never re-parsed into values.
//! - [`Tee`]: the storage [`EventSink`] when a stream is configured. It renders the batch,
//!   encodes it, hands the events to the hub (live delivery comes first and never waits for the
//!   stream), then gives the records to the stream.
//! - [`EventStream`]: the transport. `kafka` (cargo feature `kafka`) is an idempotent rdkafka
//!   producer with a bounded local buffer: it never blocks the storage writer; an event it
//!   cannot take (buffer full) or deliver (timed out) goes into the [`backlog`], from which a
//!   relay re-reads it from the store and publishes it once the brokers answer again.
//! - [`start`] builds the sink from the configuration; [`Events::start_relay`] starts the
//!   backlog's relay once the store is open; [`Events::close`] flushes and saves the backlog on
//!   shutdown.
//! - [`decode`](decode::decode): a record read back (the search index of every node follows the
//!   stream, `search/stream.rs`), the inverse of [`Record::encode`].
//!
//! Metrics: `confab_events_published_total` (delivery acknowledged by the brokers),
//! `confab_events_failed_total{reason}` (delivery failed after retries, e.g. timed out: the
//! event goes into the backlog), `confab_events_backlog` (events waiting to be published
//! again), `confab_events_republished_total` (events handed back to the stream from the
//! backlog), `confab_events_dropped_total{reason}` (given up: `encode`, `gone` (no longer in the
//! store), `backlog_full` (media events past the backlog's cap)).

pub mod backlog;
pub mod decode;
#[cfg(feature = "kafka")]
pub(crate) mod kafka;
pub mod rendered;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confab_protocol::rest::MediaInfo;
use confab_protocol::{EventKind, Millis};
use confab_storage::{DynStore, EventSink, StoredEvent};
use metrics::counter;
pub use rendered::{Rendered, RenderedSink, render_all};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use self::backlog::Backlog;
use crate::config::{Config, EventsBackend};
use crate::metrics::EVENTS_DROPPED_TOTAL as DROPPED_TOTAL;

/// The topic used when none is configured.
pub const DEFAULT_TOPIC: &str = "confab.events";
/// The envelope format version (`v`). Adding fields keeps it; changing or removing one bumps it.
pub const ENVELOPE_VERSION: u32 = 1;

/// Warnings about dropped or failed events are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why the event stream cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("invalid events URL: {0}")]
    Url(String),
    #[error(
        "--events kafka://… needs a confab built with the `kafka` cargo feature \
         (cargo build --release --features kafka)"
    )]
    KafkaNotBuilt,
    #[cfg(feature = "kafka")]
    #[error("cannot create the kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// One event as published: `{"v":1,"type":…,"tenant":…,"conversation":…,"seq":…,"ts":…,
/// "event":{…the ServerFrame…}}`. Consumers can deserialize it with this type too.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<'a> {
    /// Format version ([`ENVELOPE_VERSION`]).
    pub v: u32,
    /// The event kind, equal to the frame's own `type`.
    #[serde(rename = "type")]
    pub kind: EventKind,
    #[serde(borrow)]
    pub tenant: Cow<'a, str>,
    #[serde(borrow)]
    pub conversation: Cow<'a, str>,
    /// The event's position in its conversation: gapless, from 1.
    pub seq: u64,
    /// Commit time, in milliseconds since the Unix epoch.
    pub ts: Millis,
    /// The event's `ServerFrame`, exactly as WebSocket clients receive it.
    #[serde(borrow)]
    pub event: &'a RawValue,
}

impl<'a> Envelope<'a> {
    /// The envelope of a committed event. Fails only if the frame is not JSON.
    pub fn of(event: &'a Rendered) -> serde_json::Result<Envelope<'a>> {
        Ok(Envelope {
            v: ENVELOPE_VERSION,
            kind: event.kind,
            tenant: Cow::Borrowed(&event.tenant),
            conversation: Cow::Borrowed(&event.conversation),
            seq: event.seq,
            ts: event.ts,
            // Borrows the frame text after a validation scan: no values are built.
            event: serde_json::from_str(&event.frame)?,
        })
    }

    /// The envelope's JSON bytes.
    pub fn to_vec(&self) -> serde_json::Result<Vec<u8>> {
        let capacity = 96 + self.tenant.len() + self.conversation.len() + self.event.get().len();
        let mut out = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut out, self)?;
        Ok(out)
    }
}

/// An encoded event, ready for the transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The partitioning key: the conversation id (a media event's: the file's id).
    pub key: String,
    /// The `type` header: the event kind (`message`, …, `media_uploaded`, `media_deleted`).
    pub kind: &'static str,
    pub tenant: String,
    pub ts: Millis,
    /// A conversation event's seq (none for media events, which are not in the store).
    pub seq: Option<u64>,
    /// The [`Envelope`] JSON.
    pub payload: Vec<u8>,
}

impl Record {
    /// Encodes a committed event.
    pub fn encode(event: &Rendered) -> serde_json::Result<Record> {
        let payload = Envelope::of(event)?.to_vec()?;
        Ok(Record {
            key: event.conversation.clone(),
            kind: event.kind.as_str(),
            tenant: event.tenant.clone(),
            ts: event.ts,
            seq: Some(event.seq),
            payload,
        })
    }
}

/// Where encoded events leave the process.
pub trait EventStream: Send + Sync + 'static {
    /// Enqueues records, in order. Runs on the storage writer thread: must never block (what a
    /// full buffer cannot take goes into the backlog).
    fn send(&self, records: Vec<Record>);

    /// Records enqueued and not yet delivered (or failed).
    fn in_flight(&self) -> usize {
        0
    }

    /// Periodic upkeep, off the async runtime (may block briefly): e.g. replacing a producer
    /// that failed for good.
    fn maintain(&self) {}

    /// Stops accepting records and waits up to `timeout` for the enqueued ones to be delivered;
    /// what is left is given up (and counted). Blocks: call it off the async runtime.
    fn close(&self, timeout: Duration);
}

/// A media file's envelope (version 1): `{"v":1,"type","tenant","ts","media":{…}}`, `media`
/// being the file's `MediaInfo` when uploaded, `{"id","by"}` when deleted.
#[derive(Debug, Serialize)]
struct MediaEnvelope<'a, T: Serialize> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    tenant: &'a str,
    ts: Millis,
    media: &'a T,
}

/// A deleted file, as its `media_deleted` event says.
#[derive(Debug, Serialize)]
struct DeletedMedia<'a> {
    id: &'a str,
    by: &'a str,
}

impl Record {
    /// The `media_uploaded` record of a new file.
    pub fn media_uploaded(tenant: &str, file: &MediaInfo) -> serde_json::Result<Record> {
        Record::media("media_uploaded", tenant, &file.id, file.created_at, file)
    }

    /// The `media_deleted` record of file `id`, deleted by `by` at `ts`.
    pub fn media_deleted(
        tenant: &str,
        id: &str,
        by: &str,
        ts: Millis,
    ) -> serde_json::Result<Record> {
        Record::media("media_deleted", tenant, id, ts, &DeletedMedia { id, by })
    }

    fn media<T: Serialize>(
        kind: &'static str,
        tenant: &str,
        id: &str,
        ts: Millis,
        media: &T,
    ) -> serde_json::Result<Record> {
        let envelope = MediaEnvelope {
            v: ENVELOPE_VERSION,
            kind,
            tenant,
            ts,
            media,
        };
        Ok(Record {
            key: id.to_owned(),
            kind,
            tenant: tenant.to_owned(),
            ts,
            seq: None,
            payload: serde_json::to_vec(&envelope)?,
        })
    }
}

/// The storage sink when an event stream is configured: the hub, then the stream.
pub struct Tee {
    hub: Arc<dyn RenderedSink>,
    stream: Arc<dyn EventStream>,
    encode_log: LogLimiter,
}

impl Tee {
    pub fn new(hub: Arc<dyn RenderedSink>, stream: Arc<dyn EventStream>) -> Tee {
        Tee {
            hub,
            stream,
            encode_log: LogLimiter::new(WARN_EVERY),
        }
    }
}

impl EventSink for Tee {
    fn publish(&self, events: Vec<StoredEvent>) {
        self.publish_rendered(render_all(events));
    }
}

impl RenderedSink for Tee {
    fn publish_rendered(&self, events: Vec<Rendered>) {
        // Encoded before the hub takes ownership of the frames (which avoids copying them);
        // sent after it, so live delivery never waits on the stream.
        let mut records = Vec::with_capacity(events.len());
        for event in &events {
            match Record::encode(event) {
                Ok(record) => records.push(record),
                Err(err) => {
                    counter!(DROPPED_TOTAL, "reason" => "encode").increment(1);
                    if let Some(suppressed) = self.encode_log.check() {
                        tracing::error!(
                            error = %err,
                            conversation = %event.conversation,
                            seq = event.seq,
                            suppressed,
                            "dropping an event: its frame is not json"
                        );
                    }
                }
            }
        }
        self.hub.publish_rendered(events);
        self.stream.send(records);
    }
}

/// The storage sink and, when configured, the stream behind it.
pub struct Events {
    sink: Arc<dyn RenderedSink>,
    stream: Option<Arc<dyn EventStream>>,
    /// What the stream could not take or deliver (with a stream).
    backlog: Option<Arc<Backlog>>,
}

impl Events {
    /// Where the store's committed events go once rendered (the search feed renders them: see
    /// [`SearchService::sink`](crate::search::SearchService::sink)).
    pub fn sink(&self) -> Arc<dyn RenderedSink> {
        self.sink.clone()
    }

    /// The stream, when configured (for the events that are not a conversation's: media).
    pub fn stream(&self) -> Option<Arc<dyn EventStream>> {
        self.stream.clone()
    }

    /// Whether events leave the process.
    pub fn is_streaming(&self) -> bool {
        self.stream.is_some()
    }

    /// Starts republishing the backlog (re-read from `store`), when there is a stream.
    pub fn start_relay(&self, store: DynStore) {
        if let (Some(stream), Some(backlog)) = (&self.stream, &self.backlog) {
            backlog::spawn_relay(backlog.clone(), stream.clone(), store);
        }
    }

    /// Events waiting in the backlog.
    pub fn backlog(&self) -> u64 {
        self.backlog.as_ref().map_or(0, |backlog| backlog.len())
    }

    /// Flushes the stream (up to `timeout`), then saves the backlog (with what was not
    /// delivered in time). Call it after the store has closed, so that every committed event
    /// has been handed over.
    pub async fn close(&self, timeout: Duration) {
        let Some(stream) = self.stream.clone() else {
            return;
        };
        let backlog = self.backlog.clone();
        let closing = move || {
            stream.close(timeout);
            if let Some(backlog) = backlog {
                backlog.save();
                let left = backlog.len();
                if left > 0 {
                    tracing::warn!(
                        events = left,
                        "event stream backlog saved; it is republished after the next start"
                    );
                }
            }
        };
        if let Err(err) = tokio::task::spawn_blocking(closing).await {
            tracing::error!(error = %err, "event stream flush panicked");
        }
    }
}

/// Builds the storage sink: the hub alone, or a [`Tee`] of the hub and the configured stream.
/// Never waits for the stream's servers: an outage at start is survived like any other.
pub fn start<H: EventSink + RenderedSink>(
    config: &Config,
    hub: Arc<H>,
) -> Result<Events, EventsError> {
    let url = match &config.events {
        EventsBackend::None => {
            return Ok(Events {
                sink: hub,
                stream: None,
                backlog: None,
            });
        }
        EventsBackend::Kafka(url) => KafkaUrl::parse(url)?,
    };
    let backlog = Arc::new(Backlog::open(&config.data_dir));
    let stream = kafka_stream(&url, &config.events_topic, backlog.clone())?;
    Ok(Events {
        sink: Arc::new(Tee::new(hub, stream.clone())),
        stream: Some(stream),
        backlog: Some(backlog),
    })
}

#[cfg(feature = "kafka")]
fn kafka_stream(
    url: &KafkaUrl,
    topic: &str,
    backlog: Arc<Backlog>,
) -> Result<Arc<dyn EventStream>, EventsError> {
    Ok(Arc::new(kafka::KafkaStream::start(url, topic, backlog)?))
}

#[cfg(not(feature = "kafka"))]
fn kafka_stream(
    _url: &KafkaUrl,
    _topic: &str,
    _backlog: Arc<Backlog>,
) -> Result<Arc<dyn EventStream>, EventsError> {
    Err(EventsError::KafkaNotBuilt)
}

/// A parsed `kafka://host:port[,host:port…][?property=value&…]`. The properties are
/// librdkafka producer settings, applied over Confab's defaults; names and values are
/// percent-decoded (`sasl.password=p%26ss` is `p&ss`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUrl {
    /// `bootstrap.servers`: `host:port,host:port`.
    pub brokers: String,
    pub properties: Vec<(String, String)>,
}

impl KafkaUrl {
    pub fn parse(url: &str) -> Result<KafkaUrl, EventsError> {
        let bad = |why: &str| Err(EventsError::Url(format!("{why} (in {url:?})")));
        let Some(rest) = url.strip_prefix("kafka://") else {
            return bad("expected `none` or kafka://host:port");
        };
        let (brokers, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !brokers.split(',').all(is_broker) {
            return bad("each broker must be host:port");
        }
        if !query
            .split('&')
            .all(|pair| pair.is_empty() || pair.contains('='))
        {
            return bad("query parameters must be property=value");
        }
        let mut properties = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if key.is_empty() || key == "bootstrap.servers" {
                return bad("a property needs a name, and the brokers go before `?`");
            }
            properties.push((key.into_owned(), value.into_owned()));
        }
        Ok(KafkaUrl {
            brokers: brokers.to_owned(),
            properties,
        })
    }
}

/// `host:port` with a host (a name, an IPv4 address or a bracketed IPv6 one) and a port above
/// zero, as the `url` crate reads an authority; nothing else.
fn is_broker(broker: &str) -> bool {
    if broker.contains(['/', '?', '#', '@']) {
        return false;
    }
    url::Url::parse(&format!("kafka://{broker}")).is_ok_and(|parsed| {
        parsed.host_str().is_some_and(|host| !host.is_empty())
            && parsed.port().is_some_and(|port| port > 0)
    })
}

/// Kafka's rule for topic names.
pub fn is_valid_topic(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Lets a repeated warning through at most once per interval, counting what it held back.
/// Lock-free: it is checked on the storage writer and rdkafka threads.
pub(crate) struct LogLimiter {
    every_ms: u64,
    started: Instant,
    /// Milliseconds since `started` before which nothing is logged.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub(crate) fn new(every: Duration) -> LogLimiter {
        LogLimiter {
            every_ms: every.as_millis().try_into().unwrap_or(u64::MAX),
            started: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(number held back since the last one)` when this occurrence should be logged.
    pub(crate) fn check(&self) -> Option<u64> {
        let now = self
            .started
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        self.check_at(now)
    }

    fn check_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.every_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::{Value, json};

    use super::*;

    fn stored(kind: EventKind, frame: &str) -> Rendered {
        Rendered {
            tenant: "acme".into(),
            conversation: "c-1".into(),
            seq: 7,
            kind,
            subject: None,
            ts: 1_700_000_000_123,
            frame: frame.into(),
        }
    }

    const FRAME: &str = r#"{"type":"reaction_added","conversation":"c-1","seq":7,"message":"m-1","user":"bob","emoji":"👍","ts":1700000000123}"#;

    #[test]
    fn the_envelope_wraps_the_frame_text_as_is() {
        let event = stored(EventKind::ReactionAdded, FRAME);
        let record = Record::encode(&event).expect("encode");
        let text = std::str::from_utf8(&record.payload).expect("utf-8");
        assert!(text.ends_with(&format!(r#""event":{FRAME}}}"#)), "{text}");
        let value: Value = serde_json::from_str(text).expect("json");
        assert_eq!(
            value,
            json!({
                "v": 1,
                "type": "reaction_added",
                "tenant": "acme",
                "conversation": "c-1",
                "seq": 7,
                "ts": 1_700_000_000_123_i64,
                "event": serde_json::from_str::<Value>(FRAME).expect("frame"),
            })
        );
        assert_eq!(record.key, "c-1");
        assert_eq!(record.tenant, "acme");
        assert_eq!(record.kind, EventKind::ReactionAdded.as_str());
        assert_eq!(record.ts, 1_700_000_000_123);
    }

    #[test]
    fn envelopes_round_trip_and_escape_strings() {
        let mut event = stored(EventKind::Message, r#"{"type":"message","body":"a\"b"}"#);
        event.tenant = "te\"nant\\".into();
        let record = Record::encode(&event).expect("encode");
        let envelope: Envelope<'_> = serde_json::from_slice(&record.payload).expect("decode");
        assert_eq!(envelope.v, ENVELOPE_VERSION);
        assert_eq!(envelope.kind, EventKind::Message);
        assert_eq!(envelope.tenant, "te\"nant\\");
        assert_eq!(envelope.conversation, "c-1");
        assert_eq!(envelope.seq, 7);
        assert_eq!(envelope.event.get(), event.frame);
    }

    #[test]
    fn every_kind_is_named_like_its_frame() {
        for kind in EventKind::ALL {
            let frame = format!(r#"{{"type":"{}"}}"#, kind.as_str());
            let record = Record::encode(&stored(kind, &frame)).expect("encode");
            let value: Value = serde_json::from_slice(&record.payload).expect("json");
            assert_eq!(value["type"], kind.as_str());
            assert_eq!(value["event"]["type"], kind.as_str());
        }
    }

    #[test]
    fn a_frame_that_is_not_json_is_refused() {
        assert!(Record::encode(&stored(EventKind::Message, "{not json")).is_err());
        assert!(Record::encode(&stored(EventKind::Message, "")).is_err());
    }

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
    }

    impl RenderedSink for Recorder {
        fn publish_rendered(&self, events: Vec<Rendered>) {
            let mut calls = self.calls.lock().expect("lock");
            for event in events {
                calls.push(format!("hub {}", event.seq));
            }
        }
    }

    struct Stream(Arc<Recorder>);

    impl EventStream for Stream {
        fn send(&self, records: Vec<Record>) {
            let mut calls = self.0.calls.lock().expect("lock");
            for record in records {
                let envelope: Envelope<'_> = serde_json::from_slice(&record.payload).expect("json");
                calls.push(format!("stream {}", envelope.seq));
            }
        }

        fn close(&self, _timeout: Duration) {}
    }

    /// What the hub was handed, and the stream's payloads.
    #[derive(Default)]
    struct Texts {
        hub: Mutex<Vec<String>>,
        stream: Mutex<Vec<Vec<u8>>>,
    }

    impl RenderedSink for Texts {
        fn publish_rendered(&self, events: Vec<Rendered>) {
            let mut hub = self.hub.lock().expect("lock");
            hub.extend(events.into_iter().map(|event| event.frame));
        }
    }

    struct Payloads(Arc<Texts>);

    impl EventStream for Payloads {
        fn send(&self, records: Vec<Record>) {
            let mut stream = self.0.stream.lock().expect("lock");
            stream.extend(records.into_iter().map(|record| record.payload));
        }

        fn close(&self, _timeout: Duration) {}
    }

    #[test]
    fn the_tee_renders_a_stored_event_once_for_the_hub_and_the_stream() {
        let texts = Arc::new(Texts::default());
        let tee = Tee::new(texts.clone(), Arc::new(Payloads(texts.clone())));
        tee.publish(vec![StoredEvent {
            tenant: "acme".into(),
            conversation: "c-1".into(),
            seq: 7,
            ts: 1_700_000_000_123,
            body: confab_protocol::EventBody::ReactionAdded {
                message: "m-1".into(),
                user: "bob".into(),
                emoji: "👍".into(),
            },
        }]);
        assert_eq!(*texts.hub.lock().expect("lock"), [FRAME]);
        let payloads = texts.stream.lock().expect("lock");
        let envelope: Envelope<'_> = serde_json::from_slice(&payloads[0]).expect("envelope");
        assert_eq!(envelope.event.get(), FRAME);
        assert_eq!(envelope.kind, EventKind::ReactionAdded);
    }

    #[test]
    fn the_tee_feeds_the_hub_first_and_skips_unencodable_events() {
        let recorder = Arc::new(Recorder::default());
        let tee = Tee::new(recorder.clone(), Arc::new(Stream(recorder.clone())));
        let mut bad = stored(EventKind::Message, "{oops");
        bad.seq = 2;
        let mut third = stored(EventKind::Message, "{}");
        third.seq = 3;
        tee.publish_rendered(vec![stored(EventKind::Message, "{}"), bad, third]);
        let calls = recorder.calls.lock().expect("lock").clone();
        assert_eq!(
            calls,
            ["hub 7", "hub 2", "hub 3", "stream 7", "stream 3"],
            "the hub gets everything first, in order; the stream what could be encoded"
        );
    }

    #[test]
    fn kafka_urls_parse() {
        let url =
            KafkaUrl::parse("kafka://a:9092,b.example:19092?linger.ms=20&acks=all").expect("valid");
        assert_eq!(url.brokers, "a:9092,b.example:19092");
        assert_eq!(
            url.properties,
            [
                ("linger.ms".to_owned(), "20".to_owned()),
                ("acks".to_owned(), "all".to_owned())
            ]
        );
        assert_eq!(
            KafkaUrl::parse("kafka://[::1]:9092").expect("ipv6").brokers,
            "[::1]:9092"
        );
        let url = KafkaUrl::parse("kafka://a:9092?sasl.password=p%26ss%3D&client.id=a+b")
            .expect("percent-encoded values");
        assert_eq!(
            url.properties,
            [
                ("sasl.password".to_owned(), "p&ss=".to_owned()),
                ("client.id".to_owned(), "a b".to_owned())
            ]
        );
        for bad in [
            "kafka://",
            "kafka://host",
            "kafka://host:0",
            "kafka://host:99999",
            "kafka://:9092",
            "kafka://a:1,",
            "kafka://a:1/path",
            "kafka://a:1?novalue",
            "kafka://a:1?bootstrap.servers=b:2",
            "kafka://a:1?bootstrap%2Eservers=b:2",
            "kafka://user@a:1",
            "kafka://a:1,b",
            "kafka://[::1:9092",
            "redis://a:1",
        ] {
            assert!(KafkaUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(is_valid_topic("confab.events"));
        assert!(is_valid_topic("a-b_C.9"));
        for bad in ["", ".", "..", "with space", "slash/", &"x".repeat(250)] {
            assert!(!is_valid_topic(bad), "{bad}");
        }
    }

    #[test]
    fn the_log_limiter_lets_one_through_per_interval() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(limiter.check_at(0), Some(0));
        assert_eq!(limiter.check_at(1), None);
        assert_eq!(limiter.check_at(9_999), None);
        assert_eq!(limiter.check_at(10_000), Some(2));
        assert_eq!(limiter.check_at(10_001), None);
        assert_eq!(limiter.check_at(25_000), Some(1));
    }

    #[cfg(not(feature = "kafka"))]
    #[test]
    fn kafka_without_the_feature_fails_clearly() {
        let config = Config {
            events: EventsBackend::Kafka("kafka://127.0.0.1:9092".into()),
            ..Config::default()
        };
        let err = start(&config, Arc::new(crate::hub::Hub::new()))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("`kafka` cargo feature"), "{err}");
    }

    #[test]
    fn without_a_stream_the_hub_is_the_sink() {
        let events = start(&Config::default(), Arc::new(crate::hub::Hub::new())).expect("start");
        assert!(!events.is_streaming());
    }
}
