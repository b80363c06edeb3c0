//! Prometheus metrics: the recorder, the names, and the HTTP middleware.
//!
//! Every metric Confab exports is declared here, in one list ([`ALL`]), so `/metrics` is
//! documented in one place; the modules that record them use these names.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use confab_protocol::EventKind;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

mod wire;

pub use wire::WireStats;

pub const CONNECTIONS_ACTIVE: &str = "confab_connections_active";
pub const CONNECTIONS_TOTAL: &str = "confab_connections_total";
pub const ROOMS_JOINED: &str = "confab_rooms_joined";
pub const EVENTS_TOTAL: &str = "confab_events_total";
pub const EPHEMERAL_TOTAL: &str = "confab_ephemeral_total";
pub const FANOUT_DELIVERIES_TOTAL: &str = "confab_fanout_deliveries_total";
pub const USER_NUDGES_TOTAL: &str = "confab_user_nudges_total";
pub const USER_EVENTS_DELIVERED_TOTAL: &str = "confab_user_events_delivered_total";
pub const WRITE_DELAY_WAKES_TOTAL: &str = "confab_write_delay_wakes_total";
pub const WRITE_DELAY_SECONDS: &str = "confab_write_delay_seconds";
pub const WRITE_DELAY_PER_WAKE: &str = "confab_write_delay_deliveries_per_wakeup";
pub const SLOW_CONSUMERS_TOTAL: &str = "confab_slow_consumers_dropped_total";
pub const ACK_LATENCY: &str = "confab_ack_latency_seconds";
pub const WS_ERRORS_TOTAL: &str = "confab_ws_errors_total";
pub const HTTP_REQUESTS_TOTAL: &str = "confab_http_requests_total";
pub const HTTP_DURATION: &str = "confab_http_request_duration_seconds";
pub const TCP_CONNECTIONS_OPEN: &str = "confab_tcp_connections_open";
pub const HTTP_CONNECTIONS_OPEN: &str = "confab_http_connections_open";
pub const CONNECTIONS_SHED_TOTAL: &str = "confab_connections_shed_total";
pub const CONNECTIONS_REFUSED_TOTAL: &str = "confab_connections_refused_total";
pub const HTTP_TIMEOUTS_TOTAL: &str = "confab_http_timeouts_total";
pub const FANOUT_CONNECTED: &str = "confab_fanout_connected";
pub const FANOUT_PUBLISHED_TOTAL: &str = "confab_fanout_published_total";
pub const FANOUT_RECEIVED_TOTAL: &str = "confab_fanout_received_total";
pub const FANOUT_DROPPED_TOTAL: &str = "confab_fanout_dropped_total";
pub const FANOUT_RECONNECTS_TOTAL: &str = "confab_fanout_reconnects_total";
pub const FANOUT_INBOUND_WAITS_TOTAL: &str = "confab_fanout_inbound_waits_total";
pub const FANOUT_REPAIRS_TOTAL: &str = "confab_fanout_repairs_total";
pub const EVENTS_PUBLISHED_TOTAL: &str = "confab_events_published_total";
pub const EVENTS_FAILED_TOTAL: &str = "confab_events_failed_total";
pub const EVENTS_DROPPED_TOTAL: &str = "confab_events_dropped_total";
pub const EVENTS_BACKLOG: &str = "confab_events_backlog";
pub const PRESENCE_COALESCED_TOTAL: &str = "confab_presence_coalesced_total";
pub const WS_THROTTLED_TOTAL: &str = "confab_ws_throttled_total";
pub const EVENTS_REPUBLISHED_TOTAL: &str = "confab_events_republished_total";
pub const EVENTS_IN_FLIGHT: &str = "confab_events_in_flight";
pub const EVENTS_PRODUCER_RESTARTS_TOTAL: &str = "confab_events_producer_restarts_total";
pub const MEDIA_UPLOADED_BYTES_TOTAL: &str = "confab_media_uploaded_bytes_total";
pub const MEDIA_DOWNLOADED_BYTES_TOTAL: &str = "confab_media_downloaded_bytes_total";
pub const MEDIA_UPLOADS_IN_PROGRESS: &str = "confab_media_uploads_in_progress";
pub const MEDIA_UPLOADS_TOTAL: &str = "confab_media_uploads_total";
pub const MEDIA_UPLOADS_EXPIRED_TOTAL: &str = "confab_media_uploads_expired_total";
pub const MEDIA_THUMBNAIL_FAILURES_TOTAL: &str = "confab_media_thumbnail_failures_total";
pub const SEARCH_INDEXED_TOTAL: &str = "confab_search_indexed_total";
pub const SEARCH_DROPPED_TOTAL: &str = "confab_search_dropped_total";
pub const SEARCH_COMMIT_DURATION: &str = "confab_search_commit_duration_seconds";
pub const SEARCH_QUERY_DURATION: &str = "confab_search_query_duration_seconds";
pub const SEARCH_CONSUMER_LAG_EVENTS: &str = "confab_search_consumer_lag_events";
pub const SEARCH_CONSUMER_LAG_SECONDS: &str = "confab_search_consumer_lag_seconds";
pub const SEARCH_DEAD_LETTERED_TOTAL: &str = "confab_search_dead_lettered_total";
pub const SEARCH_REINDEX_TOTAL: &str = "confab_search_reindex_total";
pub const SEARCH_REINDEX_DURATION: &str = "confab_search_reindex_duration_seconds";
pub const SEARCH_REINDEX_CHANGED_TOTAL: &str = "confab_search_reindex_changed_total";
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
pub const BUILD_INFO: &str = "confab_build_info";
pub const WS_CLOSES_TOTAL: &str = "confab_ws_closes_total";
pub const WS_UNAUTHENTICATED: &str = "confab_ws_unauthenticated";
pub const REPLAYED_EVENTS_TOTAL: &str = "confab_replayed_events_total";
pub const REPLAYS_TOTAL: &str = "confab_replays_total";
pub const STORE_COMMIT_DURATION: &str = confab_storage::metrics::COMMIT_DURATION;
pub const STORE_BATCH_JOBS: &str = confab_storage::metrics::BATCH_JOBS;
pub const PROCESS_THREADS: &str = "process_threads";
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
pub const PROCESS_VIRTUAL_MEMORY_MAX: &str = "process_virtual_memory_max_bytes";
pub const WS_FRAMES_TOTAL: &str = "confab_ws_frames_total";
pub const WS_BYTES_TOTAL: &str = "confab_ws_bytes_total";
pub const FANOUT_LATENCY: &str = "confab_fanout_latency_seconds";
pub const OUTBOUND_QUEUED: &str = "confab_outbound_queued_frames";
pub const OUTBOUND_QUEUE_MAX: &str = "confab_outbound_queue_max_frames";

/// The buckets of every latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its name, kind and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

use Kind::{Counter, Gauge, Histogram};

const fn metric(name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric { name, kind, help }
}

/// Every metric `/metrics` exports, in one list: [`install`] describes them from it (the `# HELP`
/// lines), and the docker test checks that the Grafana dashboard queries only these. The
/// `process_*` ones are measured by `metrics-process`.
#[rustfmt::skip] // a table: one metric a line
pub const ALL: &[Metric] = &[
    metric(CONNECTIONS_ACTIVE, Gauge, "Open WebSocket sessions."),
    metric(CONNECTIONS_TOTAL, Counter, "WebSocket sessions opened."),
    metric(ROOMS_JOINED, Gauge, "Room memberships of open sessions."),
    metric(EVENTS_TOTAL, Counter, "Durable events committed, by kind."),
    metric(EPHEMERAL_TOTAL, Counter, "Ephemeral events (typing, presence), by kind."),
    metric(FANOUT_DELIVERIES_TOTAL, Counter, "Frames handed to local sessions."),
    metric(USER_NUDGES_TOTAL, Counter, "Local connections told that their user has new user events."),
    metric(USER_EVENTS_DELIVERED_TOTAL, Counter, "User events sent to connections (live and resumed)."),
    metric(WRITE_DELAY_WAKES_TOTAL, Counter, "Sessions woken by a write-delay tick."),
    metric(
        WRITE_DELAY_SECONDS,
        Gauge,
        "The write delay in force, in seconds (chosen every second under `auto`).",
    ),
    metric(
        WRITE_DELAY_PER_WAKE,
        Gauge,
        "Under `auto`: deliveries per session wake-up in the last second (or what holding back \
         would have made them, while not holding back).",
    ),
    metric(SLOW_CONSUMERS_TOTAL, Counter, "Sessions closed because their queue was full."),
    metric(ACK_LATENCY, Histogram, "Time from a send's arrival to its ack, in seconds."),
    metric(WS_ERRORS_TOTAL, Counter, "Error frames sent on WebSockets, by code."),
    metric(HTTP_REQUESTS_TOTAL, Counter, "HTTP requests, by method, route and status."),
    metric(HTTP_DURATION, Histogram, "HTTP request duration in seconds, by method and route."),
    metric(TCP_CONNECTIONS_OPEN, Gauge, "Accepted TCP connections, HTTP or upgraded."),
    metric(HTTP_CONNECTIONS_OPEN, Gauge, "Connections still speaking plain HTTP."),
    metric(CONNECTIONS_SHED_TOTAL, Counter, "HTTP connections closed to make room, by reason."),
    metric(CONNECTIONS_REFUSED_TOTAL, Counter, "Connections closed at once at the cap."),
    metric(HTTP_TIMEOUTS_TOTAL, Counter, "HTTP connections or requests timed out, by phase."),
    metric(FANOUT_CONNECTED, Gauge, "1 while the fan-out's link to a Redis shard is connected, by shard (its position in `hub`)."),
    metric(FANOUT_PUBLISHED_TOTAL, Counter, "Messages published to other nodes, by shard."),
    metric(FANOUT_RECEIVED_TOTAL, Counter, "Messages received from other nodes, by shard."),
    metric(FANOUT_DROPPED_TOTAL, Counter, "Fan-out messages dropped, by reason and shard."),
    metric(FANOUT_RECONNECTS_TOTAL, Counter, "Reconnections of the fan-out, by shard."),
    metric(FANOUT_INBOUND_WAITS_TOTAL, Counter, "Times the fan-out waited for the hub."),
    metric(
        FANOUT_REPAIRS_TOTAL,
        Counter,
        "Repairs of dropped fan-out messages (a room resync, a user nudge or a presence sync \
         published again), by shard.",
    ),
    metric(EVENTS_PUBLISHED_TOTAL, Counter, "Events published to the event stream."),
    metric(EVENTS_FAILED_TOTAL, Counter, "Event stream delivery failures, by reason."),
    metric(EVENTS_DROPPED_TOTAL, Counter, "Events given up by the event stream, by reason."),
    metric(PRESENCE_COALESCED_TOTAL, Counter, "Presence flips held back to coalesce a user joining and leaving quickly."),
    metric(WS_THROTTLED_TOTAL, Counter, "Times a WebSocket client told rate_limited was not read for its wait."),
    metric(EVENTS_BACKLOG, Gauge, "Events waiting to be published to the event stream again."),
    metric(EVENTS_REPUBLISHED_TOTAL, Counter, "Events handed to the event stream again from its backlog."),
    metric(EVENTS_IN_FLIGHT, Gauge, "Events in the event stream producer's buffer, not yet delivered."),
    metric(EVENTS_PRODUCER_RESTARTS_TOTAL, Counter, "Event stream producers replaced after failing for good."),
    metric(MEDIA_UPLOADED_BYTES_TOTAL, Counter, "Bytes of media files stored."),
    metric(MEDIA_DOWNLOADED_BYTES_TOTAL, Counter, "Bytes of media files served."),
    metric(MEDIA_UPLOADS_IN_PROGRESS, Gauge, "Media upload requests streaming into storage."),
    metric(MEDIA_UPLOADS_TOTAL, Counter, "Media uploads finished, by way and outcome."),
    metric(MEDIA_UPLOADS_EXPIRED_TOTAL, Counter, "Resumable uploads removed after going idle."),
    metric(MEDIA_THUMBNAIL_FAILURES_TOTAL, Counter, "Images no thumbnail was made of, by reason."),
    metric(SEARCH_INDEXED_TOTAL, Counter, "Message changes applied to the search index."),
    metric(SEARCH_DROPPED_TOTAL, Counter, "Message events not indexed: the indexer was behind."),
    metric(SEARCH_COMMIT_DURATION, Histogram, "Search index commit duration in seconds."),
    metric(SEARCH_QUERY_DURATION, Histogram, "Search query duration in seconds, by endpoint."),
    metric(SEARCH_CONSUMER_LAG_EVENTS, Gauge, "Events on the stream the search index has not read."),
    metric(SEARCH_CONSUMER_LAG_SECONDS, Gauge, "Age of the newest stream event read, while behind."),
    metric(SEARCH_DEAD_LETTERED_TOTAL, Counter, "Stream records the index could not read, by reason."),
    metric(SEARCH_REINDEX_TOTAL, Counter, "Tenant reindexes (POST /v1/admin/reindex) finished, by outcome (done or failed)."),
    metric(SEARCH_REINDEX_DURATION, Histogram, "Tenant reindex duration in seconds, from start to swap (or failure)."),
    metric(SEARCH_REINDEX_CHANGED_TOTAL, Counter, "Search documents reindexes rewrote or removed because they differed from storage."),
    metric(PROCESS_RESIDENT_MEMORY, Gauge, "Resident memory size in bytes."),
    metric(PROCESS_CPU_SECONDS, Counter, "User and system CPU time in seconds."),
    metric(PROCESS_OPEN_FDS, Gauge, "Open file descriptors."),
    metric(PROCESS_MAX_FDS, Gauge, "Maximum number of open file descriptors."),
    metric(PROCESS_START_TIME, Gauge, "Start time of the process since the Unix epoch in seconds."),
    metric(BUILD_INFO, Gauge, "1, labelled with the server's version."),
    metric(WS_CLOSES_TOTAL, Counter, "WebSocket sessions ended, by close code (client: closed by the client)."),
    metric(WS_UNAUTHENTICATED, Gauge, "WebSocket connections waiting for their auth frame."),
    metric(REPLAYS_TOTAL, Counter, "Joins with since that replayed missed events, by outcome."),
    metric(REPLAYED_EVENTS_TOTAL, Counter, "Missed events replayed to joins with since."),
    metric(STORE_COMMIT_DURATION, Histogram, "Store commit duration in seconds (to durable), by backend."),
    metric(STORE_BATCH_JOBS, Histogram, "Writes committed together by one SQLite group commit."),
    metric(PROCESS_THREADS, Gauge, "Threads of the process."),
    metric(PROCESS_VIRTUAL_MEMORY, Gauge, "Virtual memory size in bytes."),
    metric(PROCESS_VIRTUAL_MEMORY_MAX, Gauge, "Largest virtual memory size allowed, in bytes."),
    metric(WS_FRAMES_TOTAL, Counter, "WebSocket data frames of sessions, by direction (in: from clients)."),
    metric(WS_BYTES_TOTAL, Counter, "Payload bytes of WebSocket data frames of sessions, by direction."),
    metric(FANOUT_LATENCY, Histogram, "Time from a durable event's commit on this node to its write to a subscriber's socket, in seconds."),
    metric(OUTBOUND_QUEUED, Gauge, "Items queued to sessions for writing, all connections together (at scrape)."),
    metric(OUTBOUND_QUEUE_MAX, Gauge, "Items queued to the most backed-up connection (at scrape)."),
];

/// The series of labelled counters that exist from start (at 0), so that a rate over them is
/// defined before the first event: each label's values as the code writes them. Counters of
/// the optional backends (Redis fan-out, Kafka events) register theirs when they start; HTTP
/// requests by route appear with their first request.
fn labelled_series() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let one = |name, label, values: &[&'static str]| {
        values
            .iter()
            .map(move |value| (name, vec![(label, *value)]))
            .collect::<Vec<_>>()
    };
    let mut series = Vec::new();
    let kinds: Vec<&'static str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
    series.extend(one(EVENTS_TOTAL, "kind", &kinds));
    series.extend(one(EPHEMERAL_TOTAL, "kind", &["typing", "read"]));
    series.extend(one(REPLAYS_TOTAL, "outcome", &["recovered", "too_many"]));
    series.extend(one(SEARCH_REINDEX_TOTAL, "outcome", &["done", "failed"]));
    series.extend(one(WS_FRAMES_TOTAL, "direction", &["in", "out"]));
    series.extend(one(WS_BYTES_TOTAL, "direction", &["in", "out"]));
    series.extend(one(
        HTTP_TIMEOUTS_TOTAL,
        "phase",
        &["header", "idle", "body"],
    ));
    series.extend(one(
        CONNECTIONS_SHED_TOTAL,
        "reason",
        &["max_connections", "descriptors"],
    ));
    series.extend(one(
        MEDIA_THUMBNAIL_FAILURES_TOTAL,
        "reason",
        &["too_large", "unsupported", "corrupt"],
    ));
    for way in ["single", "chunked"] {
        series.push((
            MEDIA_UPLOADS_TOTAL,
            vec![("way", way), ("outcome", "stored")],
        ));
    }
    series
}

/// Every counter without labels, and the known series of labelled ones, at 0.
fn register_counters() {
    let labelled: HashSet<&str> = labelled_series().iter().map(|(name, _)| *name).collect();
    // Labelled counters whose values are not listed above.
    let by_label = [
        WS_ERRORS_TOTAL,
        WS_CLOSES_TOTAL,
        HTTP_REQUESTS_TOTAL,
        FANOUT_DROPPED_TOTAL,
        // By shard: registered at 0 when the fan-out starts (a single node has none).
        FANOUT_PUBLISHED_TOTAL,
        FANOUT_RECEIVED_TOTAL,
        FANOUT_RECONNECTS_TOTAL,
        EVENTS_FAILED_TOTAL,
        EVENTS_DROPPED_TOTAL,
        SEARCH_DEAD_LETTERED_TOTAL,
    ];
    for metric in ALL {
        if metric.kind == Counter
            && !labelled.contains(metric.name)
            && !by_label.contains(&metric.name)
            && !metric.name.starts_with("process_")
        {
            counter!(metric.name).absolute(0);
        }
    }
    for (name, labels) in labelled_series() {
        let labels: Vec<metrics::Label> = labels
            .into_iter()
            .map(|(key, value)| metrics::Label::new(key, value))
            .collect();
        counter!(name, labels).absolute(0);
    }
}

/// Describes every metric of [`ALL`] to the installed recorder.
fn describe() {
    for metric in ALL {
        let (name, help) = (metric.name, metric.help);
        match metric.kind {
            Counter => describe_counter!(name, help),
            Gauge => describe_gauge!(name, help),
            Histogram => describe_histogram!(name, help),
        }
    }
}

/// Installs the global Prometheus recorder; the handle renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let latency_buckets = LATENCY_BUCKETS;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(ACK_LATENCY.into()), &latency_buckets)?
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &latency_buckets)?
        .set_buckets_for_metric(
            Matcher::Full(STORE_COMMIT_DURATION.into()),
            &latency_buckets,
        )?
        .set_buckets_for_metric(
            Matcher::Full(STORE_BATCH_JOBS.into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )?
        .install_recorder()?;
    describe();
    register_counters();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(WS_UNAUTHENTICATED).set(0.0);
    outbound_queues(0, 0);
    Ok(handle)
}

pub fn connection_opened() {
    gauge!(CONNECTIONS_ACTIVE).increment(1.0);
    counter!(CONNECTIONS_TOTAL).increment(1);
}

pub fn connection_closed() {
    gauge!(CONNECTIONS_ACTIVE).decrement(1.0);
}

/// An accepted TCP connection, HTTP or upgraded.
pub fn tcp_connection_opened() {
    gauge!(TCP_CONNECTIONS_OPEN).increment(1.0);
}

pub fn tcp_connection_closed() {
    gauge!(TCP_CONNECTIONS_OPEN).decrement(1.0);
}

/// Connections still speaking plain HTTP (not upgraded, so not authenticated).
pub fn http_connections(delta: f64) {
    gauge!(HTTP_CONNECTIONS_OPEN).increment(delta);
}

/// An HTTP connection closed to make room (`reason`: `max_connections` or `descriptors`).
pub fn connection_shed(reason: &'static str) {
    counter!(CONNECTIONS_SHED_TOTAL, "reason" => reason).increment(1);
}

/// A new connection closed at once: at the cap with nothing to shed.
pub fn connection_refused() {
    counter!(CONNECTIONS_REFUSED_TOTAL).increment(1);
}

/// An HTTP connection or request timed out (`phase`: `header`, `idle` or `body`).
pub fn http_timeout(phase: &'static str) {
    counter!(HTTP_TIMEOUTS_TOTAL, "phase" => phase).increment(1);
}

/// A WebSocket client told `rate_limited` goes unread for its wait.
pub fn ws_throttled() {
    counter!(WS_THROTTLED_TOTAL).increment(1);
}

/// A presence flip held back to coalesce.
pub fn presence_coalesced() {
    counter!(PRESENCE_COALESCED_TOTAL).increment(1);
}

pub fn room_joined(delta: f64) {
    gauge!(ROOMS_JOINED).increment(delta);
}

pub fn event_committed(kind: EventKind) {
    counter!(EVENTS_TOTAL, "kind" => kind.as_str()).increment(1);
}

pub fn ephemeral(kind: &'static str) {
    counter!(EPHEMERAL_TOTAL, "kind" => kind).increment(1);
}

pub fn user_nudges(count: u64) {
    if count > 0 {
        counter!(USER_NUDGES_TOTAL).increment(count);
    }
}

pub fn user_events_delivered(count: u64) {
    if count > 0 {
        counter!(USER_EVENTS_DELIVERED_TOTAL).increment(count);
    }
}

pub fn fanout_deliveries(count: u64) {
    if count > 0 {
        counter!(FANOUT_DELIVERIES_TOTAL).increment(count);
    }
}

/// Sessions woken by a tick of the write delay (each writes what it was sent since the last).
pub fn write_delay_wakes(count: usize) {
    if count > 0 {
        counter!(WRITE_DELAY_WAKES_TOTAL).increment(count as u64);
    }
}

/// The write delay in force, and under `auto` the deliveries per wake-up it was chosen on.
pub fn write_delay_chosen(delay: Duration, per_wake: Option<f64>) {
    gauge!(WRITE_DELAY_SECONDS).set(delay.as_secs_f64());
    if let Some(per_wake) = per_wake {
        gauge!(WRITE_DELAY_PER_WAKE).set(per_wake);
    }
}

/// The outbound queues at scrape: items queued to every connection together, and to the most
/// backed-up one.
pub fn outbound_queues(total: usize, deepest: usize) {
    gauge!(OUTBOUND_QUEUED).set(total as f64);
    gauge!(OUTBOUND_QUEUE_MAX).set(deepest as f64);
}

pub fn slow_consumer() {
    counter!(SLOW_CONSUMERS_TOTAL).increment(1);
}

pub fn ack_latency(elapsed: Duration) {
    histogram!(ACK_LATENCY).record(elapsed.as_secs_f64());
}

pub fn media_uploaded(bytes: u64) {
    counter!(MEDIA_UPLOADED_BYTES_TOTAL).increment(bytes);
}

pub fn media_downloaded(bytes: u64) {
    counter!(MEDIA_DOWNLOADED_BYTES_TOTAL).increment(bytes);
}

/// An upload request started (`1.0`) or ended (`-1.0`).
pub fn media_uploading(delta: f64) {
    gauge!(MEDIA_UPLOADS_IN_PROGRESS).increment(delta);
}

/// An upload finished: `way` is `single` or `chunked`, `outcome` `stored` or an error code.
pub fn media_upload(way: &'static str, outcome: &'static str) {
    counter!(MEDIA_UPLOADS_TOTAL, "way" => way, "outcome" => outcome).increment(1);
}

/// `reason`: `too_large` (refused by the decoder's limits or the source size), `unsupported`,
/// `corrupt`.
pub fn media_thumbnail_failed(reason: &'static str) {
    counter!(MEDIA_THUMBNAIL_FAILURES_TOTAL, "reason" => reason).increment(1);
}

pub fn media_uploads_expired(count: usize) {
    counter!(MEDIA_UPLOADS_EXPIRED_TOTAL).increment(count as u64);
}

pub fn search_indexed(changes: usize) {
    counter!(SEARCH_INDEXED_TOTAL).increment(changes as u64);
}

pub fn search_dropped(events: usize) {
    counter!(SEARCH_DROPPED_TOTAL).increment(events as u64);
}

pub fn search_commit(elapsed: Duration) {
    histogram!(SEARCH_COMMIT_DURATION).record(elapsed.as_secs_f64());
}

/// The search index's lag behind the event stream: events not yet read (summed over the
/// partitions) and the age of the newest event read (0 once caught up).
pub fn search_consumer_lag(events: u64, seconds: f64) {
    gauge!(SEARCH_CONSUMER_LAG_EVENTS).set(events as f64);
    gauge!(SEARCH_CONSUMER_LAG_SECONDS).set(seconds);
}

/// A stream record sent to the dead-letter topic (`reason`: see `events::decode`).
pub fn search_dead_lettered(reason: &'static str) {
    counter!(SEARCH_DEAD_LETTERED_TOTAL, "reason" => reason).increment(1);
}

/// A tenant's reindex finished with `outcome` (`done` or `failed`) after `elapsed`, having
/// rewritten or removed `changed` documents.
pub fn search_reindex(outcome: &'static str, elapsed: Duration, changed: u64) {
    counter!(SEARCH_REINDEX_TOTAL, "outcome" => outcome).increment(1);
    histogram!(SEARCH_REINDEX_DURATION).record(elapsed.as_secs_f64());
    counter!(SEARCH_REINDEX_CHANGED_TOTAL).increment(changed);
}

pub fn search_query(endpoint: &'static str, elapsed: Duration) {
    histogram!(SEARCH_QUERY_DURATION, "endpoint" => endpoint).record(elapsed.as_secs_f64());
}

pub fn ws_error(code: &'static str) {
    counter!(WS_ERRORS_TOTAL, "code" => code).increment(1);
}

/// A WebSocket session ended with close `code` (`client` when the client closed it first,
/// `socket_error` when the connection failed).
pub fn ws_closed(code: &str) {
    counter!(WS_CLOSES_TOTAL, "code" => intern(code)).increment(1);
}

/// A connection started (`1.0`) or stopped (`-1.0`) waiting for its auth frame.
pub fn ws_unauthenticated(delta: f64) {
    gauge!(WS_UNAUTHENTICATED).increment(delta);
}

/// A join with `since` replayed `events` missed events (`recovered`), or had missed more than
/// the replay cap (`too_many`: the client pages through history instead).
pub fn replay(recovered: bool, events: usize) {
    let outcome = if recovered { "recovered" } else { "too_many" };
    counter!(REPLAYS_TOTAL, "outcome" => outcome).increment(1);
    if recovered {
        counter!(REPLAYED_EVENTS_TOTAL).increment(events as u64);
    }
}

/// Counts and times every HTTP request by method, matched route and status: a tower layer
/// around every route. Not axum's `from_fn`, which boxes each request's future (a large
/// allocation per request, and 10,000 of them when as many clients connect at once); the labels
/// are `&'static str`, so recording allocates nothing either.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackHttpLayer;

impl<S> tower_layer::Layer<S> for TrackHttpLayer {
    type Service = TrackHttp<S>;

    fn layer(&self, inner: S) -> TrackHttp<S> {
        TrackHttp { inner }
    }
}

/// The service of [`TrackHttpLayer`].
#[derive(Debug, Clone)]
pub struct TrackHttp<S> {
    inner: S,
}

impl<S> tower_service::Service<Request> for TrackHttp<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackHttpFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", |path| intern(path.as_str()));
        let method = method_label(request.method());
        TrackHttpFuture {
            inner: self.inner.call(request),
            started: Instant::now(),
            method,
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// Records the request once its response is ready.
    pub struct TrackHttpFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: &'static str,
        route: &'static str,
    }
}

impl<F, E> Future for TrackHttpFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let (method, route) = (*this.method, *this.route);
            let status = intern(response.status().as_str());
            counter!(HTTP_REQUESTS_TOTAL, "method" => method, "route" => route, "status" => status)
                .increment(1);
            // An upgrade's "duration" is its handshake; the session's life is not a request.
            if response.status() != axum::http::StatusCode::SWITCHING_PROTOCOLS {
                histogram!(HTTP_DURATION, "method" => method, "route" => route)
                    .record(this.started.elapsed().as_secs_f64());
            }
        }
        Poll::Ready(result)
    }
}

/// The method as a label: the standard ones by name, any other as `other` (a client may send
/// any token as a method, and every label value is a time series kept forever).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// A `'static` copy of a label value from a small, fixed set: the router's route patterns and
/// the three-digit status codes. Each distinct value is leaked once, as the metrics registry
/// keeps every label value for the life of the process anyway.
fn intern(value: &str) -> &'static str {
    static INTERNED: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let set = INTERNED.get_or_init(RwLock::default);
    if let Some(found) = set
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(value)
    {
        return found;
    }
    let mut set = set.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = set.get(value) {
        return found;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// Refreshes the standard process metrics (`process_resident_memory_bytes`,
/// `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`,
/// `process_start_time_seconds`, …) in the recorder, just before `/metrics` is rendered.
pub fn collect_process_metrics() {
    metrics_process::Collector::default().collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_interned_once() {
        let route = String::from("/v1/conversations/{id}");
        let first = intern(&route);
        let second = intern("/v1/conversations/{id}");
        assert_eq!(first, route);
        assert!(std::ptr::eq(first, second), "one copy per distinct value");
        assert_eq!(intern(axum::http::StatusCode::NOT_FOUND.as_str()), "404");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let custom = Method::from_bytes(b"BREW").expect("a valid token");
        assert_eq!(method_label(&custom), "other");
    }

    #[test]
    fn every_metric_is_declared_once_with_a_prefix_and_help() {
        let mut names = HashSet::new();
        for metric in ALL {
            assert!(names.insert(metric.name), "{} twice", metric.name);
            assert!(
                metric.name.starts_with("confab_") || metric.name.starts_with("process_"),
                "{}",
                metric.name
            );
            assert!(!metric.help.is_empty(), "{} has no help", metric.name);
            let is_counter = metric.kind == Kind::Counter;
            assert_eq!(
                metric.name.ends_with("_total"),
                is_counter,
                "Prometheus names counters, and only counters, `_total`: {}",
                metric.name
            );
        }
    }

    #[test]
    fn the_process_metrics_are_the_standard_ones() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            collect_process_metrics();
        });
        let text = handle.render();
        for name in [
            PROCESS_RESIDENT_MEMORY,
            PROCESS_CPU_SECONDS,
            PROCESS_OPEN_FDS,
            PROCESS_MAX_FDS,
            PROCESS_START_TIME,
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
    }
}
