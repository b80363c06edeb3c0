//! One simulated client of a scale worker, for the whole run: it connects and joins its
//! conversation, sends what the pacer hands it, checks every `message` it receives against the
//! last seq it saw (a seq not above it is a duplicate, a jump past the next one a gap), and when
//! the storm drops it, reconnects after a random pause and rejoins with `since` = that last seq,
//! as a real client resumes after a network blip.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::worker::Shared;
use crate::conn::{self, OPEN_TIMEOUT, Ws, prefix};

/// Pause before retrying a failed reconnect (plus up to as much again of jitter).
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// How a session ended.
enum End {
    /// The run is over.
    Stop,
    /// The storm dropped it.
    Dropped,
    /// The server closed it or the socket failed.
    Lost,
}

/// What `joined` said.
struct Joined {
    last_seq: u64,
    recovered: bool,
}

/// One client: `local` is its index within the worker.
pub struct Client {
    pub shared: Arc<Shared>,
    pub local: usize,
    pub outgoing: mpsc::Receiver<()>,
}

impl Client {
    fn global(&self) -> usize {
        self.shared.plan.first + self.local
    }

    fn conversation(&self) -> usize {
        self.global() % self.shared.conversations.len()
    }

    /// The client's life: first connect, then sessions until the run stops.
    pub async fn live(mut self) {
        let mut storms = self.shared.storms.subscribe();
        storms.borrow_and_update();
        let begun = Instant::now();
        let joined = match self.open(None).await {
            Ok(opened) => opened,
            Err(err) => {
                self.shared.connect_failed(format!("{err:#}"));
                return;
            }
        };
        let (mut ws, joined) = joined;
        self.shared.last_seq[self.local].store(joined.last_seq, Ordering::Relaxed);
        self.shared.opened(self.local, begun.elapsed());
        // The last storm this client has resumed from.
        let mut counted = *storms.borrow();
        loop {
            match self.session(ws, &mut storms).await {
                End::Stop => return,
                End::Dropped => {
                    let pause = self.shared.jitter();
                    tokio::time::sleep(pause).await;
                }
                End::Lost => {
                    self.shared
                        .counters
                        .unexpected
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            let dropped = Instant::now();
            let Some(reopened) = self.reopen(&mut storms).await else {
                return;
            };
            ws = reopened;
            let storm = *storms.borrow();
            if storm > counted {
                counted = storm;
                self.shared.resumed(dropped.elapsed());
            }
        }
    }

    /// Reconnects with `since` until it works or the run stops.
    async fn reopen(&mut self, storms: &mut watch::Receiver<u64>) -> Option<Ws> {
        loop {
            if self.shared.stop.is_cancelled() {
                return None;
            }
            let since = self.shared.last_seq[self.local].load(Ordering::Relaxed);
            match self.open(Some(since)).await {
                Ok((ws, joined)) => {
                    if !joined.recovered {
                        let counters = &self.shared.counters;
                        counters.not_recovered.fetch_add(1, Ordering::Relaxed);
                    }
                    // A storm that began while reconnecting is this same drop.
                    storms.borrow_and_update();
                    return Some(ws);
                }
                Err(err) => {
                    self.shared.reconnect_failed(format!("{err:#}"));
                    let extra = rand::random_range(0..=RETRY_PAUSE.as_millis() as u64);
                    tokio::time::sleep(RETRY_PAUSE + Duration::from_millis(extra)).await;
                }
            }
        }
    }

    /// Connects, waits for `welcome`, joins (with `since` when resuming) and reads `joined`.
    async fn open(&self, since: Option<u64>) -> anyhow::Result<(Ws, Joined)> {
        let Ok(_permit) = self.shared.gate.acquire().await else {
            anyhow::bail!("the worker is stopping");
        };
        let global = self.global();
        let shared = &self.shared;
        let endpoint = &shared.endpoints[usize::from(shared.node_of(global))];
        let conversation = &shared.conversations[self.conversation()];
        let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
            let token = shared.ids.token(global)?;
            let mut ws = endpoint.connect(self.local, &token).await?;
            conn::expect(&mut ws, prefix::WELCOME).await?;
            let frame = match since {
                Some(seq) => {
                    format!(r#"{{"type":"join","conversation":"{conversation}","since":{seq}}}"#)
                }
                None => format!(r#"{{"type":"join","conversation":"{conversation}"}}"#),
            };
            ws.send(Message::Text(frame.into())).await?;
            let joined = self.expect_joined(&mut ws).await?;
            let last_seq = number_after(&joined, r#""last_seq":"#).context("joined: last_seq")?;
            let recovered = !joined.contains(r#""recovered":false"#);
            anyhow::Ok((
                ws,
                Joined {
                    last_seq,
                    recovered,
                },
            ))
        })
        .await;
        opened.unwrap_or_else(|_| Err(anyhow::anyhow!("open timed out")))
    }

    /// Reads frames until `joined`, counting any `message` that comes before it (the
    /// protocol sends none: the replay and live events follow `joined`).
    async fn expect_joined(&self, ws: &mut Ws) -> anyhow::Result<String> {
        loop {
            let text = conn::expect(ws, "{").await?;
            if text.starts_with(prefix::JOINED) {
                return Ok(text);
            }
            if text.starts_with(prefix::MESSAGE) {
                let counters = &self.shared.counters;
                counters.before_joined.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs one connected session until the storm, the end of the run, or a failure.
    async fn session(&mut self, mut ws: Ws, storms: &mut watch::Receiver<u64>) -> End {
        let shared = self.shared.clone();
        let stopped = shared.stop.cancelled();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => {
                    conn::close(ws).await;
                    return End::Stop;
                }
                _ = storms.changed() => {
                    // Dropped without a close frame, as a network blip drops it.
                    drop(ws);
                    return End::Dropped;
                }
                next = self.outgoing.recv() => {
                    if next.is_none() {
                        // The pacer's queues close only when the worker exits.
                        conn::close(ws).await;
                        return End::Stop;
                    }
                    let frame = shared.send_frame(self.global(), self.conversation());
                    if ws.send(Message::Text(frame.into())).await.is_err() {
                        return End::Lost;
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.on_text(&text),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Lost,
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    fn on_text(&self, text: &str) {
        let shared = &self.shared;
        if text.starts_with(prefix::MESSAGE) {
            let Some(seq) = number_after(text, r#""seq":"#) else {
                return;
            };
            let last = &shared.last_seq[self.local];
            let previous = last.load(Ordering::Relaxed);
            shared.on_message(self.local, seq, previous, text);
            if seq > previous {
                last.store(seq, Ordering::Relaxed);
            }
        } else if text.starts_with(prefix::ACK) {
            shared.on_ack(self.local, self.conversation(), text);
        } else if text.starts_with(prefix::ERROR) {
            shared.on_error(text);
        }
    }
}

/// The decimal number right after `key` in `text`.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn seq_is_not_user_seq() {
        let frame = r#"{"type":"message","user_seq":9,"seq":41,"body":"t1."}"#;
        assert_eq!(super::number_after(frame, r#""seq":"#), Some(41));
        assert_eq!(super::number_after(r#"{"user_seq":9}"#, r#""seq":"#), None);
    }
}
