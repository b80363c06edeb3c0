//! Opening the connections of a run ([`open_fleet`]), each connection's life once it is open
//! ([`drive`]), and closing them ([`close_fleet`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::{ERROR_SAMPLES, Outgoing, Run, SEND_QUEUE};
use crate::conn::{self, Endpoint, OPEN_TIMEOUT, Ws, prefix};
use crate::stats::{Percentiles, new_histogram, record};

/// One connection to open.
#[derive(Debug, Clone, Copy)]
pub struct ConnPlan {
    /// Index of the user whose token it uses.
    pub user: usize,
    /// Index of its conversation (joined, and sent to).
    pub conversation: usize,
    /// Joins the conversation (receives its events).
    pub join: bool,
    /// Sends messages when the pacer picks it.
    pub sends: bool,
    /// Index of the server it connects to (0 unless the scenario spans several nodes).
    pub node: u8,
}

/// How opening the connections went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectReport {
    pub target: usize,
    pub ok: usize,
    pub failed: usize,
    /// From the first connect to the last `welcome` (authenticated and established).
    pub authenticated_secs: f64,
    /// From the first connect to the last `joined`.
    pub joined_secs: f64,
    /// Authenticated connections per second over `authenticated_secs`.
    pub connect_rate_per_sec: f64,
    /// TCP connect + upgrade + `welcome`, per connection.
    pub handshake: Percentiles,
    /// `join` to `joined`, per connection.
    pub join: Percentiles,
    pub concurrency: usize,
    pub error_samples: Vec<String>,
    /// Server CPU time over the connecting phase per connection opened (`idle` only: other
    /// scenarios open their connections beside a running load).
    pub server_cpu_us_per_connect: Option<f64>,
    /// The generator's own CPU time over the connecting phase, per connection opened.
    pub client_cpu_us_per_connect: Option<f64>,
}

/// The open connections of a run.
pub struct Fleet {
    pub tasks: JoinSet<()>,
    /// Queues of the sending connections, with each one's conversation index.
    pub senders: Vec<(mpsc::Sender<Outgoing>, u32)>,
    pub report: ConnectReport,
}

/// How the opening connections went so far. Each connection task records its own outcome under
/// the lock (held for a moment, never across an await) and only the last one wakes
/// [`open_fleet`]: a channel message per connection woke the scenario's task 10,000 times, a
/// futex call and an inter-processor interrupt each, CPU the generator took from the server.
struct Tally {
    report: ConnectReport,
    handshakes: Histogram<u64>,
    joins: Histogram<u64>,
    last_welcome: Instant,
    last_join: Instant,
}

impl Tally {
    fn opened(&mut self, begun: Instant, welcomed: Instant, joined: Instant) {
        self.report.ok += 1;
        record(&mut self.handshakes, welcomed - begun);
        record(&mut self.joins, joined - welcomed);
        self.last_welcome = self.last_welcome.max(welcomed);
        self.last_join = self.last_join.max(joined);
    }

    fn failed(&mut self, reason: String) {
        self.report.failed += 1;
        if self.report.error_samples.len() < ERROR_SAMPLES {
            self.report.error_samples.push(reason);
        }
    }
}

/// The shared [`Tally`] and the count of connections that are done (opened or failed).
struct Opening {
    tally: Mutex<Tally>,
    done: AtomicUsize,
    total: usize,
    all_done: Notify,
}

impl Opening {
    /// Nothing recorded yet of `total` connections, opened from `started`.
    fn new(total: usize, concurrency: usize, started: Instant) -> Opening {
        Opening {
            tally: Mutex::new(Tally {
                report: ConnectReport {
                    target: total,
                    concurrency,
                    ..ConnectReport::default()
                },
                handshakes: new_histogram(),
                joins: new_histogram(),
                last_welcome: started,
                last_join: started,
            }),
            done: AtomicUsize::new(0),
            total,
            all_done: Notify::new(),
        }
    }

    fn record(&self, outcome: impl FnOnce(&mut Tally)) {
        outcome(&mut self.tally.lock().unwrap_or_else(|e| e.into_inner()));
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            // Stored as a permit when nobody waits yet: the wake-up cannot be missed.
            self.all_done.notify_one();
        }
    }

    /// Waits until every connection is done, printing progress every second.
    async fn wait(&self, started: Instant) {
        let all_done = self.all_done.notified();
        tokio::pin!(all_done);
        let mut progress = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        loop {
            tokio::select! {
                _ = &mut all_done => break,
                _ = progress.tick() => {
                    let (ok, failed) = {
                        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
                        (tally.report.ok, tally.report.failed)
                    };
                    eprintln!(
                        "[{:>6.1}s] connecting: {ok} ok, {failed} failed of {}",
                        started.elapsed().as_secs_f64(),
                        self.total
                    );
                }
            }
        }
    }

    /// The report of the connections recorded so far, opened from `started`.
    fn report(&self, started: Instant) -> ConnectReport {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = tally.report.clone();
        report.authenticated_secs = (tally.last_welcome - started).as_secs_f64();
        report.joined_secs = (tally.last_join - started).as_secs_f64();
        report.connect_rate_per_sec = if report.authenticated_secs > 0.0 {
            report.ok as f64 / report.authenticated_secs
        } else {
            0.0
        };
        report.handshake = Percentiles::of(&tally.handshakes);
        report.join = Percentiles::of(&tally.joins);
        report
    }
}

/// One connection's part of the [`Opening`]: recorded exactly once, as a failure if its task
/// ends (or panics) before it said how the opening went, so that [`open_fleet`] never waits for
/// an outcome that cannot come.
struct Outcome {
    opening: Option<Arc<Opening>>,
}

impl Outcome {
    fn record(mut self, outcome: impl FnOnce(&mut Tally)) {
        if let Some(opening) = self.opening.take() {
            opening.record(outcome);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if let Some(opening) = self.opening.take() {
            opening.record(|tally| tally.failed("the connection's task ended early".to_owned()));
        }
    }
}

/// What [`open_fleet`] needs besides the plans.
pub struct FleetSpec {
    /// The servers, by node index ([`ConnPlan::node`]).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Tokens by user index.
    pub tokens: Arc<Vec<String>>,
    /// Conversation ids by index.
    pub conversations: Arc<Vec<Arc<str>>>,
    pub concurrency: usize,
}

/// Opens every planned connection, at most `concurrency` at a time, and returns once each is
/// established and joined (or has failed). The connections then live on in `tasks` until
/// `run.stop` is cancelled.
pub async fn open_fleet(spec: &FleetSpec, plans: &[ConnPlan], run: &Arc<Run>) -> Fleet {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let opening = Arc::new(Opening::new(plans.len(), spec.concurrency, started));
    let mut tasks = JoinSet::new();
    let mut senders = Vec::new();
    for (index, plan) in plans.iter().copied().enumerate() {
        let outgoing = plan.sends.then(|| {
            let (tx, rx) = mpsc::channel(SEND_QUEUE);
            senders.push((tx, plan.conversation as u32));
            rx
        });
        let conn = Conn {
            index,
            plan,
            endpoint: spec.endpoints[usize::from(plan.node) % spec.endpoints.len()].clone(),
            token: spec.tokens[plan.user].clone(),
            conversation: spec.conversations[plan.conversation].clone(),
        };
        let outcome = Outcome {
            opening: Some(opening.clone()),
        };
        tasks.spawn(conn.open_and_drive(gate.clone(), outcome, outgoing, run.clone()));
    }
    if !plans.is_empty() {
        opening.wait(started).await;
    }
    Fleet {
        tasks,
        senders,
        report: opening.report(started),
    }
}

/// One planned connection, with what it needs to open.
struct Conn {
    index: usize,
    plan: ConnPlan,
    endpoint: Arc<Endpoint>,
    token: String,
    conversation: Arc<str>,
}

impl Conn {
    /// Opens the connection once `gate` lets it, records how that went in `outcome`, then
    /// [`drive`]s it until the run stops.
    async fn open_and_drive(
        self,
        gate: Arc<Semaphore>,
        outcome: Outcome,
        outgoing: Option<mpsc::Receiver<Outgoing>>,
        run: Arc<Run>,
    ) {
        let Ok(permit) = gate.acquire_owned().await else {
            return;
        };
        let begun = Instant::now();
        let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
            let mut ws = self.endpoint.connect(self.index, &self.token).await?;
            conn::expect(&mut ws, prefix::WELCOME).await?;
            let welcomed = Instant::now();
            if self.plan.join {
                conn::join(&mut ws, &self.conversation).await?;
            }
            anyhow::Ok((ws, welcomed))
        })
        .await;
        drop(permit);
        let ws = match opened {
            Ok(Ok((ws, welcomed))) => {
                let joined = Instant::now();
                outcome.record(|tally| tally.opened(begun, welcomed, joined));
                ws
            }
            Ok(Err(err)) => {
                outcome.record(|tally| tally.failed(format!("{err:#}")));
                return;
            }
            Err(_) => {
                outcome.record(|tally| tally.failed("open timed out".to_owned()));
                return;
            }
        };
        let Conn {
            index,
            plan,
            conversation,
            ..
        } = self;
        drive(ws, index, plan.node, conversation, outgoing, run).await;
    }
}

async fn next_outgoing(outgoing: &mut Option<mpsc::Receiver<Outgoing>>) -> Option<Outgoing> {
    match outgoing {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One connection's life after it joined: sends what the pacer hands it, accounts for every
/// frame it receives, and closes when the run stops.
async fn drive(
    mut ws: Ws,
    index: usize,
    node: u8,
    conversation: Arc<str>,
    mut outgoing: Option<mpsc::Receiver<Outgoing>>,
    run: Arc<Run>,
) {
    let mut last_seq = 0u64;
    // Created once: a fresh `cancelled()` per iteration would register and unregister a waiter
    // (two lock round trips) for every frame received.
    let stopped = run.stop.cancelled();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                conn::close(ws).await;
                return;
            }
            next = next_outgoing(&mut outgoing) => match next {
                Some(out) => {
                    let frame = run.send_frame(out.index, &conversation, node);
                    if ws.send(Message::Text(frame.into())).await.is_err() {
                        run.disconnected("reset".to_owned());
                        return;
                    }
                }
                None => outgoing = None,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => run.on_text(index, node, &text, &mut last_seq),
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map_or_else(|| "none".to_owned(), |f| u16::from(f.code).to_string());
                    run.disconnected(code);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    run.disconnected("reset".to_owned());
                    return;
                }
            },
        }
    }
}

/// Stops every connection task and waits (bounded) for them to close.
pub async fn close_fleet(run: &Run, mut tasks: JoinSet<()>) {
    run.stop.cancel();
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if closed.is_err() {
        tasks.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_opening_ends_even_when_a_task_gives_up_without_an_outcome() {
        let started = Instant::now();
        let opening = Arc::new(Opening::new(2, 1, started));
        let outcome = |opening: &Arc<Opening>| Outcome {
            opening: Some(opening.clone()),
        };
        outcome(&opening).record(|tally| tally.opened(started, Instant::now(), Instant::now()));
        drop(outcome(&opening));
        tokio::time::timeout(Duration::from_secs(5), opening.all_done.notified())
            .await
            .expect("the last outcome wakes the fleet");
        let tally = opening.tally.lock().expect("tally");
        assert_eq!((tally.report.ok, tally.report.failed), (1, 1));
        assert_eq!(tally.report.error_samples.len(), 1);
    }
}
