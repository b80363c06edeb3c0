//! `flood` (issue 15): does one user flooding the server degrade everybody else? The chat load
//! runs twice in one process: alone (the baseline), then beside one user who writes without
//! pause and without waiting for answers — messages, typing and reactions on its own messages —
//! into a conversation of `--flood-observers` joined connections that read everything. The
//! server's per-user limits refuse most of it (`rate_limited`), and after each refusal the server
//! stops reading the flooder for the wait it was told, so the flooder's writes block in TCP.
//! Reported: the chat's delivery and ack p99 in both phases and their ratio (the goal: within
//! 2×), and the flooder's written, accepted and refused rates.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Mutex, Notify};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::cli::FloodArgs;
use crate::conn::{self, Endpoint, prefix};
use crate::report::{ChurnReport, FloodReport, Report};
use crate::stats::{Percentiles, new_histogram, record};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::{Env, chat, run_traffic};

pub async fn run(env: &Env, args: FloodArgs) -> anyhow::Result<Report> {
    let params = serde_json::to_value(&args)?;
    eprintln!("== phase 1: the chat load alone (baseline)");
    let baseline_spec = chat::spec(env, "flood-baseline", &args.chat, params.clone(), 1).await?;
    let baseline = run_traffic(env, baseline_spec).await?;

    eprintln!("== phase 2: the chat load beside one flooding user");
    let mut spec = chat::spec(env, "flood", &args.chat, params, 1).await?;
    // The flooder and its observers are users past the chat's.
    let first = args.chat.connections;
    let observers = args.flood_observers.max(1);
    let tokens = env.tokens(first + 1 + observers)?;
    let group: Vec<usize> = (first..=first + observers).collect();
    let conversation = env
        .create_groups("flood-target", &[group], &tokens)
        .await?
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no flood conversation"))?;
    let flood = Flood {
        endpoint: env.endpoint.clone(),
        tokens,
        first,
        observers,
        conversation,
    };
    spec.side = Some(Box::new(move |stop| tokio::spawn(flood.run(stop))));
    let mut report = run_traffic(env, spec).await?;

    let ratio = |flooded: f64, alone: f64| if alone > 0.0 { flooded / alone } else { 0.0 };
    if let (Some(alone), Some(flooded), Some(flooder)) =
        (&baseline.traffic, &report.traffic, &report.churn)
    {
        report.flood = Some(FloodReport {
            baseline_delivery: alone.latency,
            baseline_ack: alone.ack_latency,
            delivery_p99_ratio: ratio(flooded.latency.p99_ms, alone.latency.p99_ms),
            ack_p99_ratio: ratio(flooded.ack_latency.p99_ms, alone.ack_latency.p99_ms),
            baseline_server_cpu_cores: baseline.server.cpu_cores,
            observers,
            flooder_sent_per_sec: flooder.target_rate_per_sec,
            flooder_accepted_per_sec: flooder.rate_per_sec,
            flooder_refused: flooder.failed,
        });
    }
    Ok(report)
}

struct Flood {
    endpoint: Arc<Endpoint>,
    tokens: Arc<Vec<String>>,
    /// The flooder's user index; the observers follow it.
    first: usize,
    observers: usize,
    conversation: Arc<str>,
}

/// What the flooder's sender and its reader share.
struct Shared {
    answered: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    other_errors: AtomicU64,
    /// Woken on every answer.
    space: Notify,
    sent_at: Mutex<HashMap<String, Instant>>,
    latency: std::sync::Mutex<Histogram<u64>>,
    /// The flooder's last acked message: what it reacts to.
    last_message: std::sync::Mutex<Option<String>>,
    errors: std::sync::Mutex<Vec<String>>,
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new() -> Self {
        Shared {
            answered: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            other_errors: AtomicU64::new(0),
            space: Notify::new(),
            sent_at: Mutex::default(),
            latency: std::sync::Mutex::new(new_histogram()),
            last_message: std::sync::Mutex::default(),
            errors: std::sync::Mutex::default(),
        }
    }

    /// Counts the flooder's answers until its stream ends.
    async fn read(
        &self,
        mut stream: impl futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
    ) {
        while let Some(Ok(frame)) = stream.next().await {
            let Message::Text(text) = frame else { continue };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let Some(reference) = value.get("ref").and_then(|r| r.as_str()) else {
                continue;
            };
            match value["type"].as_str() {
                Some("ack") => {
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                    if let Some(at) = self.sent_at.lock().await.remove(reference) {
                        record(&mut lock(&self.latency), at.elapsed());
                    }
                    if let Some(id) = value["id"].as_str() {
                        *lock(&self.last_message) = Some(id.to_owned());
                    }
                }
                Some("ok") => {
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Some("error") => {
                    self.sent_at.lock().await.remove(reference);
                    if value["code"] == "rate_limited" {
                        self.refused.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.other_errors.fetch_add(1, Ordering::Relaxed);
                        let mut errors = lock(&self.errors);
                        if errors.len() < 5 {
                            errors.push(text.as_str().to_owned());
                        }
                    }
                }
                _ => continue,
            }
            self.answered.fetch_add(1, Ordering::Relaxed);
            self.space.notify_one();
        }
    }
}

/// Writes `frame` unless `stop` comes first (a server that stops reading a flooder blocks its
/// writes): `false` when stopped.
async fn send_until(
    sink: &mut (impl futures_util::Sink<Message, Error = WsError> + Unpin),
    frame: serde_json::Value,
    stop: &CancellationToken,
) -> anyhow::Result<bool> {
    tokio::select! {
        _ = stop.cancelled() => Ok(false),
        sent = sink.send(Message::text(frame.to_string())) => sent.map(|()| true).map_err(Into::into),
    }
}

const EMOJIS: [&str; 8] = ["👍", "🎉", "❤️", "😂", "🔥", "👀", "🙏", "💯"];

impl Flood {
    /// Connects the observers (reading and discarding), then floods until `stop`. Reported as
    /// a [`ChurnReport`]: `attempted` frames sent, `ok` accepted, `failed` refused or failed,
    /// `target_rate_per_sec` sent per second, `rate_per_sec` accepted per second, `latency`
    /// the accepted messages' send-to-ack time.
    async fn run(self, stop: CancellationToken) -> ChurnReport {
        let mut report = ChurnReport::default();
        let mut readers = Vec::new();
        for i in 1..=self.observers {
            let index = self.first + i;
            let opened = async {
                let mut ws = self.endpoint.connect(index, &self.tokens[index]).await?;
                conn::expect(&mut ws, prefix::WELCOME).await?;
                conn::join(&mut ws, &self.conversation).await?;
                anyhow::Ok(ws)
            };
            match opened.await {
                Ok(mut ws) => {
                    let stop = stop.clone();
                    readers.push(tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => break,
                                frame = ws.next() => if !matches!(frame, Some(Ok(_))) { break },
                            }
                        }
                        conn::close(ws).await;
                    }));
                }
                Err(err) => report.error_samples.push(format!("observer: {err:#}")),
            }
        }
        match self.flood(&stop, &mut report).await {
            Ok(()) => {}
            Err(err) => report.error_samples.push(format!("flooder: {err:#}")),
        }
        for reader in readers {
            let _ = reader.await;
        }
        report
    }

    async fn flood(
        &self,
        stop: &CancellationToken,
        report: &mut ChurnReport,
    ) -> anyhow::Result<()> {
        let index = self.first;
        let mut ws = self.endpoint.connect(index, &self.tokens[index]).await?;
        conn::expect(&mut ws, prefix::WELCOME).await?;
        conn::join(&mut ws, &self.conversation).await?;
        let (mut sink, stream) = ws.split();
        let shared = Arc::new(Shared::new());
        let reader = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.read(stream).await })
        };
        let started = Instant::now();
        let mut sent = 0u64;
        while !stop.is_cancelled() {
            if sent.is_multiple_of(4) {
                // Typing needs no answer: sent beside the requests.
                let typing = serde_json::json!({
                    "type": "typing", "conversation": &*self.conversation,
                });
                if !send_until(&mut sink, typing, stop).await? {
                    break;
                }
            }
            let frame = self.request(sent, lock(&shared.last_message).clone());
            if frame["type"] == "send" {
                let reference = frame["ref"].as_str().unwrap_or_default().to_owned();
                shared
                    .sent_at
                    .lock()
                    .await
                    .insert(reference, Instant::now());
            }
            if !send_until(&mut sink, frame, stop).await? {
                break;
            }
            sent += 1;
        }
        let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
        // The last answers, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while shared.answered.load(Ordering::Relaxed) < sent {
                shared.space.notified().await;
            }
        })
        .await;
        // A server that is not reading the flooder would never take the close frame.
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        reader.abort();
        let accepted = shared.accepted.load(Ordering::Relaxed);
        report.attempted = sent;
        report.ok = accepted;
        report.failed =
            shared.refused.load(Ordering::Relaxed) + shared.other_errors.load(Ordering::Relaxed);
        report.target_rate_per_sec = sent as f64 / elapsed;
        report.rate_per_sec = accepted as f64 / elapsed;
        report.latency = Percentiles::of(&lock(&shared.latency));
        report.error_samples.extend(lock(&shared.errors).drain(..));
        Ok(())
    }

    /// The flooder's `n`th request: sends, and reactions added and removed on its last message.
    fn request(&self, n: u64, message: Option<String>) -> serde_json::Value {
        let reference = format!("f{n}");
        let emoji = EMOJIS[(n / 4) as usize % EMOJIS.len()];
        match (n % 4, message) {
            (1, Some(message)) => serde_json::json!({
                "type": "react", "ref": reference, "message": message, "emoji": emoji,
            }),
            (3, Some(message)) => serde_json::json!({
                "type": "unreact", "ref": reference, "message": message, "emoji": emoji,
            }),
            _ => serde_json::json!({
                "type": "send", "ref": reference, "conversation": &*self.conversation,
                "client_msg_id": format!("flood-{n}"), "body": "flood",
            }),
        }
    }
}
