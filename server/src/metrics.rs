//! Prometheus metrics: the recorder, the names, and the HTTP middleware.
//!
//! Every metric Confab exports is declared here, so `/metrics` is documented in one place.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use confab_protocol::EventKind;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS_ACTIVE: &str = "confab_connections_active";
pub const CONNECTIONS_TOTAL: &str = "confab_connections_total";
pub const ROOMS_JOINED: &str = "confab_rooms_joined";
pub const EVENTS_TOTAL: &str = "confab_events_total";
pub const EPHEMERAL_TOTAL: &str = "confab_ephemeral_total";
pub const FANOUT_DELIVERIES_TOTAL: &str = "confab_fanout_deliveries_total";
pub const SLOW_CONSUMERS_TOTAL: &str = "confab_slow_consumers_dropped_total";
pub const ACK_LATENCY: &str = "confab_ack_latency_seconds";
pub const WS_ERRORS_TOTAL: &str = "confab_ws_errors_total";
pub const HTTP_REQUESTS_TOTAL: &str = "confab_http_requests_total";
pub const HTTP_DURATION: &str = "confab_http_request_duration_seconds";

/// Installs the global Prometheus recorder; the handle renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let latency_buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(ACK_LATENCY.into()), &latency_buckets)?
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &latency_buckets)?
        .install_recorder()
}

pub fn connection_opened() {
    gauge!(CONNECTIONS_ACTIVE).increment(1.0);
    counter!(CONNECTIONS_TOTAL).increment(1);
}

pub fn connection_closed() {
    gauge!(CONNECTIONS_ACTIVE).decrement(1.0);
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

pub fn fanout_deliveries(count: u64) {
    if count > 0 {
        counter!(FANOUT_DELIVERIES_TOTAL).increment(count);
    }
}

pub fn slow_consumer() {
    counter!(SLOW_CONSUMERS_TOTAL).increment(1);
}

pub fn ack_latency(elapsed: Duration) {
    histogram!(ACK_LATENCY).record(elapsed.as_secs_f64());
}

pub fn ws_error(code: &'static str) {
    counter!(WS_ERRORS_TOTAL, "code" => code).increment(1);
}

/// Counts and times every HTTP request by method, matched route and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!(HTTP_REQUESTS_TOTAL, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
