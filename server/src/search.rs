//! The server's side of search: the index of this node (`confab_search`), fed with every
//! message event the store commits on this node, and the queries of `http/search.rs`.
//!
//! The feed: [`SearchService::sink`] wraps the store's event sink; each committed batch's
//! message events are handed (never blocking the store's writer) to the indexer thread, which
//! applies them and commits the index every `search_commit_interval`. Tantivy's work stays off
//! the async runtime: the indexer has its own thread, queries run on the blocking pool.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use std::num::NonZeroU32;

use confab_protocol::{ErrorCode, EventBody};
use confab_search::{IndexEvent, SearchIndex};
use confab_storage::{DynStore, EventSink, StoredEvent};
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::auth::AuthUser;
use crate::error::AppError;

/// Where the index lives under the data dir.
pub const SEARCH_DIR: &str = "search";

/// Batches of events waiting for the indexer; past it, batches are dropped (and counted).
const FEED_QUEUE: usize = 4096;

/// The search index of this node and its feed.
pub struct SearchService {
    pub index: Arc<SearchIndex>,
    feed: SyncSender<Vec<IndexEvent>>,
    /// Searches per user; `None` when the limit is off.
    limiter: Option<crate::state::KeyedLimiter>,
    per_minute: u32,
    /// Conversations whose events the feed dropped, to replay from storage.
    behind: Mutex<BTreeSet<(String, String)>>,
}

impl std::fmt::Debug for SearchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchService").finish_non_exhaustive()
    }
}

/// The index event of a durable event.
fn index_event(event: &StoredEvent) -> IndexEvent {
    let (tenant, conversation, seq) = (event.tenant.clone(), event.conversation.clone(), event.seq);
    match &event.body {
        EventBody::Message(posted) => IndexEvent::Posted {
            tenant,
            conversation,
            id: posted.id.clone(),
            seq,
            author: posted.author.clone(),
            body: posted.body.clone(),
            ts: event.ts,
            attachments: !posted.attachments.is_empty(),
        },
        EventBody::MessageEdited { message, body, .. } => IndexEvent::Edited {
            tenant,
            conversation,
            message: message.clone(),
            seq,
            body: body.clone(),
        },
        EventBody::MessageDeleted { message, .. } => IndexEvent::Deleted {
            tenant,
            conversation,
            message: message.clone(),
            seq,
        },
        _ => IndexEvent::Other { conversation, seq },
    }
}

impl SearchService {
    /// Opens (or creates) the index in `dir` and starts its indexer thread, which commits every
    /// `commit_interval` while there is something to commit.
    pub fn start(dir: &Path, commit_interval: Duration) -> anyhow::Result<SearchService> {
        let index = Arc::new(SearchIndex::open(dir)?);
        let (feed, events) = std::sync::mpsc::sync_channel(FEED_QUEUE);
        let indexer = index.clone();
        std::thread::Builder::new()
            .name("confab-indexer".to_owned())
            .spawn(move || run_indexer(&indexer, &events, commit_interval))?;
        Ok(SearchService {
            index,
            feed,
            limiter: None,
            per_minute: 0,
            behind: Mutex::new(BTreeSet::new()),
        })
    }

    /// The index of `config`'s data dir, committing every `search_commit_interval`.
    pub fn for_config(config: &crate::config::Config) -> anyhow::Result<Arc<SearchService>> {
        let dir = config
            .search_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join(SEARCH_DIR));
        let mut service =
            SearchService::start(&dir, config.search_commit_interval).map_err(|err| {
                err.context(format!("cannot open the search index in {}", dir.display()))
            })?;
        service.per_minute = config.search_per_minute;
        service.limiter = NonZeroU32::new(config.search_per_minute)
            .map(|per_minute| RateLimiter::keyed(Quota::per_minute(per_minute)));
        Ok(Arc::new(service))
    }

    /// Takes one search from the user's budget, or refuses with `rate_limited` and when to
    /// retry.
    pub fn check_rate(&self, user: &AuthUser) -> Result<(), AppError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&(user.tenant.clone(), user.user.clone()))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                AppError::new(
                    ErrorCode::RateLimited,
                    format!("more than {} searches per minute", self.per_minute),
                )
                .with_retry_after(wait)
            })
    }

    /// Hands `events`' message events to the indexer; never waits (a full queue drops them,
    /// counted, and says so in the log).
    pub fn feed(&self, events: &[StoredEvent]) {
        let batch: Vec<IndexEvent> = events.iter().map(index_event).collect();
        if batch.is_empty() {
            return;
        }
        match self.feed.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(batch)) => {
                crate::metrics::search_dropped(batch.len());
                tracing::warn!(
                    events = batch.len(),
                    "search indexer behind: events not indexed now"
                );
                // Replayed from storage by the next backfill round.
                let mut behind = self.behind.lock().unwrap_or_else(PoisonError::into_inner);
                behind.extend(
                    events
                        .iter()
                        .map(|e| (e.tenant.clone(), e.conversation.clone())),
                );
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The store's sink: `inner` (the hub, or the hub and the event stream), after the feed.
    pub fn sink(self: &Arc<Self>, inner: Arc<dyn EventSink>) -> Arc<dyn EventSink> {
        Arc::new(Indexed {
            inner,
            search: self.clone(),
        })
    }
}

/// Events read from storage per request of a backfill.
const BACKFILL_PAGE: u32 = 500;

impl SearchService {
    /// Replays from storage what the index lacks, then commits: every conversation whose last
    /// seq is past what the index has seen of it, or, given `only`, those conversations from
    /// their start. Run at start (a fresh index over an existing database, or a crash between
    /// a commit of the store and one of the index) and for conversations the feed dropped
    /// events of.
    pub async fn backfill(
        &self,
        store: &DynStore,
        only: Option<&BTreeSet<(String, String)>>,
    ) -> anyhow::Result<u64> {
        let mut replayed = 0;
        for (tenant, conversation, last_seq) in store.conversation_positions().await? {
            let key = (tenant, conversation);
            let mut after = match only {
                Some(only) if !only.contains(&key) => continue,
                Some(_) => 0,
                None => self.index.indexed_seq(&key.1),
            };
            let (tenant, conversation) = key;
            while after < last_seq {
                let (events, _) = store
                    .conversation_events(&tenant, &conversation, after, BACKFILL_PAGE)
                    .await?;
                let Some(last) = events.last().map(|event| event.seq) else {
                    break;
                };
                let batch: Vec<IndexEvent> = events.iter().map(index_event).collect();
                replayed += batch.len() as u64;
                let index = self.index.clone();
                tokio::task::spawn_blocking(move || index.apply(&batch)).await??;
                after = last;
            }
        }
        if replayed > 0 {
            let index = self.index.clone();
            tokio::task::spawn_blocking(move || index.commit()).await??;
        }
        Ok(replayed)
    }
}

/// How often conversations the feed dropped events of are replayed from storage.
const BACKFILL_EVERY: Duration = Duration::from_secs(10);

/// Backfills the index at start, then replays the conversations the feed fell behind on,
/// until `shutdown`.
pub fn spawn_backfill(
    services: Arc<crate::state::Services>,
    store: DynStore,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let search = &services.search;
        match search.backfill(&store, None).await {
            Ok(0) => {}
            Ok(events) => tracing::info!(events, "search index backfilled from storage"),
            Err(err) => tracing::error!(error = %err, "cannot backfill the search index"),
        }
        let mut tick = tokio::time::interval(BACKFILL_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let behind =
                std::mem::take(&mut *search.behind.lock().unwrap_or_else(PoisonError::into_inner));
            if behind.is_empty() {
                continue;
            }
            if let Err(err) = search.backfill(&store, Some(&behind)).await {
                tracing::error!(error = %err, "cannot replay dropped events into the search index");
                let mut again = search.behind.lock().unwrap_or_else(PoisonError::into_inner);
                again.extend(behind);
            }
        }
    });
}

/// A sink that feeds the index, then the sink behind it.
struct Indexed {
    inner: Arc<dyn EventSink>,
    search: Arc<SearchService>,
}

impl EventSink for Indexed {
    fn publish(&self, events: Vec<StoredEvent>) {
        self.search.feed(&events);
        self.inner.publish(events);
    }
}

/// The indexer: applies batches as they come, commits at most every `interval`.
fn run_indexer(index: &SearchIndex, events: &Receiver<Vec<IndexEvent>>, interval: Duration) {
    let mut dirty_since: Option<Instant> = None;
    loop {
        let wait = dirty_since.map_or(Duration::from_secs(3600), |since| {
            interval.saturating_sub(since.elapsed())
        });
        match events.recv_timeout(wait) {
            Ok(batch) => {
                match index.apply(&batch) {
                    Ok(changed) => crate::metrics::search_indexed(changed),
                    Err(err) => tracing::error!(error = %err, "cannot index events"),
                }
                dirty_since.get_or_insert_with(Instant::now);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                commit(index);
                return;
            }
        }
        if dirty_since.is_some_and(|since| since.elapsed() >= interval) {
            commit(index);
            dirty_since = None;
        }
    }
}

fn commit(index: &SearchIndex) {
    let started = Instant::now();
    match index.commit() {
        Ok(()) => crate::metrics::search_commit(started.elapsed()),
        Err(err) => tracing::error!(error = %err, "cannot commit the search index"),
    }
}
