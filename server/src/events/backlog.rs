//! Events the stream could not take or deliver, kept until they are published.
//!
//! A Kafka outage longer than the producer's buffer or its delivery timeout used to drop events
//! from the stream. Now each event that is refused (buffer full) or fails (delivery report) goes
//! into the backlog instead: a conversation event as its `(tenant, conversation, seq)` — the
//! event itself is in the store, so a long outage costs a few bytes per event, in ranges — and a
//! media event (not in the store) whole, up to [`MAX_WHOLE`]. The relay ([`spawn_relay`]) re-reads
//! the backlog's events from the store and hands them to the stream again, a batch at a time and
//! only while the producer's buffer has room, so that an outage cycles at most one batch through
//! the producer per delivery timeout; once the brokers answer, the backlog drains.
//!
//! The backlog is saved to `events-backlog.json` in the data dir every second while it changes
//! and at shutdown, and loaded at start: a restart during an outage keeps it. What the producer
//! held in its buffer when the process was killed (`kill -9`) is not in it (see
//! `docs/events.md`, "Guarantees").
//!
//! Republished events reach the topic after events committed later: consumers order a
//! conversation's events by `seq` (the search indexer does; `docs/events.md`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use confab_protocol::Millis;
use confab_storage::DynStore;
use metrics::{counter, gauge};
use serde::{Deserialize, Serialize};

use super::rendered::render_all;
use super::{EventStream, Record};
use crate::metrics::{
    EVENTS_BACKLOG, EVENTS_DROPPED_TOTAL, EVENTS_IN_FLIGHT, EVENTS_REPUBLISHED_TOTAL,
};

/// The file the backlog is saved in, in the data dir.
pub const FILE: &str = "events-backlog.json";
/// Media events kept whole at most (they cannot be re-read from the store).
pub const MAX_WHOLE: usize = 10_000;
/// Events handed back to the stream per relay round.
const BATCH: u64 = 2_000;
/// The relay waits while the producer holds more than this many events.
const MAX_IN_FLIGHT: usize = 10_000;
/// How often the relay looks at the backlog (and saves it when it changed).
const TICK: Duration = Duration::from_secs(1);
/// Events read from the store per query.
const READ_LIMIT: u64 = 500;

/// An event the stream must publish again.
#[derive(Debug, Clone, PartialEq)]
pub enum Retry {
    /// A conversation's event, re-read from the store.
    Event {
        tenant: String,
        conversation: String,
        seq: u64,
    },
    /// An event that is not in the store (media), kept whole.
    Whole(Record),
}

impl Retry {
    /// What to retry for `record`.
    pub fn of(record: &Record) -> Retry {
        match record.seq {
            Some(seq) => Retry::Event {
                tenant: record.tenant.clone(),
                conversation: record.key.clone(),
                seq,
            },
            None => Retry::Whole(record.clone()),
        }
    }
}

/// One unit of work taken from the backlog.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// Seqs `from..=to` of one conversation.
    Range {
        tenant: String,
        conversation: String,
        from: u64,
        to: u64,
    },
    Whole(Record),
}

/// Sorted, disjoint, non-adjacent inclusive ranges of seqs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Adds `seq`; false when it was there already.
    fn insert(&mut self, seq: u64) -> bool {
        let ranges = &mut self.0;
        // The common case: seqs arrive in order.
        match ranges.last_mut() {
            None => {
                ranges.push((seq, seq));
                return true;
            }
            Some(last) if last.1.saturating_add(1) == seq => {
                last.1 = seq;
                return true;
            }
            Some(last) if last.1 < seq => {
                ranges.push((seq, seq));
                return true;
            }
            Some(_) => {}
        }
        // The first range that ends at or just before `seq`, or after it.
        let i = ranges.partition_point(|r| r.1.saturating_add(1) < seq);
        let Some(&(start, end)) = ranges.get(i) else {
            ranges.push((seq, seq));
            return true;
        };
        if (start..=end).contains(&seq) {
            return false;
        }
        if end.saturating_add(1) == seq {
            ranges[i].1 = seq;
            if let Some(&(next_start, next_end)) = ranges.get(i + 1)
                && next_start == seq.saturating_add(1)
            {
                ranges[i].1 = next_end;
                ranges.remove(i + 1);
            }
        } else if start == seq.saturating_add(1) {
            ranges[i].0 = seq;
        } else {
            ranges.insert(i, (seq, seq));
        }
        true
    }

    fn len(&self) -> u64 {
        self.0.iter().map(|(from, to)| to - from + 1).sum()
    }

    /// Takes up to `most` seqs from the front.
    fn take(&mut self, most: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut left = most;
        while left > 0 {
            let Some(&(from, to)) = self.0.first() else {
                break;
            };
            let len = to - from + 1;
            if len <= left {
                out.push((from, to));
                self.0.remove(0);
                left -= len;
            } else {
                out.push((from, from + left - 1));
                self.0[0].0 = from + left;
                left = 0;
            }
        }
        out
    }
}

/// A media event kept whole, as saved.
#[derive(Debug, Serialize, Deserialize)]
struct SavedWhole {
    key: String,
    kind: String,
    tenant: String,
    ts: Millis,
    payload: String,
}

/// The backlog as saved in [`FILE`].
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// `(tenant, conversation, ranges)`.
    events: Vec<(String, String, Ranges)>,
    whole: Vec<SavedWhole>,
}

#[derive(Debug, Default)]
struct Pending {
    events: BTreeMap<(String, String), Ranges>,
    whole: VecDeque<Record>,
    count: u64,
    /// Changed since the last save.
    dirty: bool,
}

/// The events waiting to be published again.
#[derive(Debug)]
pub struct Backlog {
    pending: Mutex<Pending>,
    /// Where it is saved (none: kept in memory only).
    path: Option<PathBuf>,
}

impl Backlog {
    /// An empty backlog kept in memory only.
    pub fn in_memory() -> Backlog {
        Backlog {
            pending: Mutex::new(Pending::default()),
            path: None,
        }
    }

    /// The backlog saved in `dir` (empty when there is none); an unreadable file is logged and
    /// set aside, not fatal.
    pub fn open(dir: &Path) -> Backlog {
        let path = dir.join(FILE);
        let mut pending = Pending::default();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(saved) => {
                    for (tenant, conversation, ranges) in saved.events {
                        pending.count += ranges.len();
                        pending.events.insert((tenant, conversation), ranges);
                    }
                    for whole in saved.whole {
                        if let Some(record) = whole.into_record() {
                            pending.count += 1;
                            pending.whole.push_back(record);
                        }
                    }
                    if pending.count > 0 {
                        tracing::info!(
                            events = pending.count,
                            "event stream backlog loaded; republishing it"
                        );
                    }
                }
                Err(err) => {
                    let aside = path.with_extension("json.unreadable");
                    tracing::error!(
                        error = %err,
                        file = %path.display(),
                        "the event stream backlog is unreadable; set aside, its events are not republished"
                    );
                    let _ = std::fs::rename(&path, aside);
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::error!(
                error = %err,
                file = %path.display(),
                "cannot read the event stream backlog"
            ),
        }
        gauge!(EVENTS_BACKLOG).set(pending.count as f64);
        Backlog {
            pending: Mutex::new(pending),
            path: Some(path),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding it leaves consistent data (every update is one step).
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds an event to publish again.
    pub fn add(&self, retry: Retry) {
        let mut pending = self.lock();
        match retry {
            Retry::Event {
                tenant,
                conversation,
                seq,
            } => {
                if !pending
                    .events
                    .entry((tenant, conversation))
                    .or_default()
                    .insert(seq)
                {
                    return;
                }
            }
            Retry::Whole(record) => {
                if pending.whole.len() >= MAX_WHOLE {
                    counter!(EVENTS_DROPPED_TOTAL, "reason" => "backlog_full").increment(1);
                    return;
                }
                pending.whole.push_back(record);
            }
        }
        pending.count += 1;
        pending.dirty = true;
        gauge!(EVENTS_BACKLOG).set(pending.count as f64);
    }

    /// Events waiting.
    pub fn len(&self) -> u64 {
        self.lock().count
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes up to `most` events, oldest conversations' first.
    pub fn take(&self, most: u64) -> Vec<Taken> {
        let mut pending = self.lock();
        let mut out = Vec::new();
        let mut left = most;
        while left > 0 {
            let Some(record) = pending.whole.pop_front() else {
                break;
            };
            out.push(Taken::Whole(record));
            left -= 1;
        }
        while left > 0 {
            let Some(mut entry) = pending.events.first_entry() else {
                break;
            };
            let ranges = entry.get_mut().take(left);
            let (tenant, conversation) = entry.key().clone();
            if entry.get().0.is_empty() {
                entry.remove();
            }
            for (from, to) in ranges {
                left -= to - from + 1;
                out.push(Taken::Range {
                    tenant: tenant.clone(),
                    conversation: conversation.clone(),
                    from,
                    to,
                });
            }
        }
        let taken = most - left;
        if taken > 0 {
            pending.count -= taken;
            pending.dirty = true;
            gauge!(EVENTS_BACKLOG).set(pending.count as f64);
        }
        out
    }

    /// Puts back what could not be handed over (a store read failed).
    fn put_back(&self, taken: Taken) {
        match taken {
            Taken::Whole(record) => self.add(Retry::Whole(record)),
            Taken::Range {
                tenant,
                conversation,
                from,
                to,
            } => {
                for seq in from..=to {
                    self.add(Retry::Event {
                        tenant: tenant.clone(),
                        conversation: conversation.clone(),
                        seq,
                    });
                }
            }
        }
    }

    /// Saves the backlog if it changed since the last save (write, fsync, rename).
    pub fn save(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let saved = {
            let mut pending = self.lock();
            if !pending.dirty {
                return;
            }
            pending.dirty = false;
            Saved {
                events: pending
                    .events
                    .iter()
                    .map(|((tenant, conversation), ranges)| {
                        (tenant.clone(), conversation.clone(), ranges.clone())
                    })
                    .collect(),
                whole: pending.whole.iter().map(SavedWhole::of).collect(),
            }
        };
        if let Err(err) = write_file(path, &saved) {
            self.lock().dirty = true;
            tracing::error!(
                error = %err,
                file = %path.display(),
                "cannot save the event stream backlog"
            );
        }
    }
}

fn write_file(path: &Path, saved: &Saved) -> std::io::Result<()> {
    use std::io::Write;
    if saved.events.is_empty() && saved.whole.is_empty() {
        return match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        };
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(saved)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl SavedWhole {
    fn of(record: &Record) -> SavedWhole {
        SavedWhole {
            key: record.key.clone(),
            kind: record.kind.to_owned(),
            tenant: record.tenant.clone(),
            ts: record.ts,
            payload: String::from_utf8_lossy(&record.payload).into_owned(),
        }
    }

    fn into_record(self) -> Option<Record> {
        let kind = match self.kind.as_str() {
            "media_uploaded" => "media_uploaded",
            "media_deleted" => "media_deleted",
            other => {
                tracing::warn!(kind = other, "unknown event kind in the backlog; skipped");
                return None;
            }
        };
        Some(Record {
            key: self.key,
            kind,
            tenant: self.tenant,
            ts: self.ts,
            seq: None,
            payload: self.payload.into_bytes(),
        })
    }
}

/// Re-reads one range of a conversation's events and encodes them.
async fn read_range(
    store: &DynStore,
    tenant: &str,
    conversation: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Record>, confab_storage::StoreError> {
    let mut records = Vec::new();
    let mut after = from - 1;
    while after < to {
        let limit = (to - after).min(READ_LIMIT) as u32;
        let (events, last) = store
            .conversation_events(tenant, conversation, after, limit)
            .await?;
        let read = events.len();
        let events: Vec<_> = events.into_iter().filter(|e| e.seq <= to).collect();
        after = events.last().map_or(to, |e| e.seq);
        for event in render_all(events) {
            match Record::encode(&event) {
                Ok(record) => records.push(record),
                Err(_) => counter!(EVENTS_DROPPED_TOTAL, "reason" => "encode").increment(1),
            }
        }
        if read == 0 || last <= after {
            break;
        }
    }
    Ok(records)
}

/// Hands the backlog back to `stream` while it has room, and saves the backlog; until the
/// process ends.
pub fn spawn_relay(backlog: Arc<Backlog>, stream: Arc<dyn EventStream>, store: DynStore) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (saving, upkeep) = (backlog.clone(), stream.clone());
            let chores = move || {
                upkeep.maintain();
                saving.save();
            };
            if let Err(err) = tokio::task::spawn_blocking(chores).await {
                tracing::error!(error = %err, "event stream upkeep panicked");
            }
            let in_flight = stream.in_flight();
            gauge!(EVENTS_IN_FLIGHT).set(in_flight as f64);
            if !backlog.is_empty() && in_flight < MAX_IN_FLIGHT {
                relay_once(&backlog, stream.as_ref(), &store).await;
            }
        }
    });
}

/// One round of the relay: up to [`BATCH`] events back to the stream.
async fn relay_once(backlog: &Backlog, stream: &dyn EventStream, store: &DynStore) {
    let mut taken = backlog.take(BATCH).into_iter();
    while let Some(item) = taken.next() {
        let records = match &item {
            Taken::Whole(record) => vec![record.clone()],
            Taken::Range {
                tenant,
                conversation,
                from,
                to,
            } => match read_range(store, tenant, conversation, *from, *to).await {
                Ok(records) => {
                    let missing = (to - from + 1).saturating_sub(records.len() as u64);
                    if missing > 0 {
                        // Not in the store (any more): nothing to publish.
                        counter!(EVENTS_DROPPED_TOTAL, "reason" => "gone").increment(missing);
                    }
                    records
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot re-read backlog events from the store; retrying later");
                    backlog.put_back(item);
                    for rest in taken.by_ref() {
                        backlog.put_back(rest);
                    }
                    return;
                }
            },
        };
        counter!(EVENTS_REPUBLISHED_TOTAL).increment(records.len() as u64);
        stream.send(records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(conversation: &str, seq: u64) -> Retry {
        Retry::Event {
            tenant: "t".into(),
            conversation: conversation.into(),
            seq,
        }
    }

    #[test]
    fn ranges_merge_in_any_order_and_ignore_repeats() {
        let mut ranges = Ranges::default();
        for seq in [5, 6, 7, 1, 3, 2, 9, 8, 7, 20, 4] {
            ranges.insert(seq);
        }
        assert_eq!(ranges.0, vec![(1, 9), (20, 20)]);
        assert_eq!(ranges.len(), 10);
        let mut ranges = Ranges::default();
        for seq in [10, 1, 5, 3, 4] {
            ranges.insert(seq);
        }
        assert_eq!(ranges.0, vec![(1, 1), (3, 5), (10, 10)]);
        assert!(!ranges.insert(4));
        assert!(ranges.insert(2));
        assert_eq!(ranges.0, vec![(1, 5), (10, 10)]);
    }

    #[test]
    fn take_splits_ranges_and_counts() {
        let backlog = Backlog::in_memory();
        for seq in 1..=10 {
            backlog.add(event("a", seq));
        }
        backlog.add(event("b", 4));
        backlog.add(event("a", 3));
        assert_eq!(backlog.len(), 11);
        let first = backlog.take(4);
        assert_eq!(
            first,
            vec![Taken::Range {
                tenant: "t".into(),
                conversation: "a".into(),
                from: 1,
                to: 4
            }]
        );
        assert_eq!(backlog.len(), 7);
        let rest = backlog.take(100);
        assert_eq!(rest.len(), 2);
        assert!(backlog.is_empty());
    }

    #[test]
    fn saved_and_loaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backlog = Backlog::open(dir.path());
        for seq in [1, 2, 3, 7] {
            backlog.add(event("a", seq));
        }
        backlog.add(Retry::Whole(Record {
            key: "m1".into(),
            kind: "media_deleted",
            tenant: "t".into(),
            ts: 5,
            seq: None,
            payload: b"{}".to_vec(),
        }));
        backlog.save();
        let loaded = Backlog::open(dir.path());
        assert_eq!(loaded.len(), 5);
        assert_eq!(loaded.take(100), backlog.take(100));
        // Empty again: the file goes.
        loaded.lock().dirty = true;
        loaded.save();
        assert!(!dir.path().join(FILE).exists());
    }
}
