//! The server's side of search: the index of this node (`confab_search`), fed with every
//! message event the store commits on this node and, in a cluster with a Kafka event stream,
//! with every event of the stream; and the queries of `http/search.rs`.
//!
//! The feed: [`SearchService::sink`] is the store's event sink; it renders each committed batch
//! once, hands its index events (made from the rendered frames' text, not from a copy of the
//! events) to the indexer thread without ever blocking the store's writer, then the rendered
//! events to the hub (and the event stream). The indexer applies them and commits the index every `search_commit_interval` while it is searched, less
//! often while nobody searches it (`freshness.rs`). Tantivy's work stays off
//! the async runtime: the indexer has its own thread, queries run on the blocking pool.
//!
//! With `--events kafka://…` (cargo feature `kafka`), `stream.rs` also reads the whole event
//! topic into the index, on a thread of its own, so that a node's index holds what every node
//! commits (docs/events.md, "Search follows the stream"). The local feed stays: a node's own
//! events are searchable without a round trip through Kafka, and when Kafka is down. Both
//! paths apply the same events; [`SearchIndex::apply`] keeps each message at the state of its
//! highest seq, so which path delivers first, or twice, does not matter.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use confab_protocol::{EventBody, ServerFrame};
use confab_search::{IndexEvent, SearchIndex, Writers};
use confab_storage::{DynStore, EventSink, StoredEvent};

use crate::auth::AuthUser;
use crate::error::AppError;
use crate::events::decode::StreamEvent;
use crate::events::rendered::{RenderedSink, render_all_with};

pub mod freshness;
pub mod reindex;

pub use freshness::{Ask, Freshness};

/// The nice value of the search indexer and of tantivy's threads (the server's own are 0).
const INDEXING_NICE: i32 = 10;
#[cfg(feature = "kafka")]
pub mod stream;

/// Where the index lives under the data dir.
pub const SEARCH_DIR: &str = "search";

/// Batches of events waiting for the indexer; past it, batches are dropped (and counted).
const FEED_QUEUE: usize = 4096;

/// The search index of this node and its feed.
pub struct SearchService {
    pub index: Arc<SearchIndex>,
    /// Where the index lives; reindexes build theirs beside it, in `reindex-<job>`.
    dir: PathBuf,
    /// The index writer's memory budget, in bytes (a reindex's writer gets the same).
    budget: usize,
    /// Reindexes of tenants, running and finished.
    pub reindexes: reindex::Reindexes,
    feed: SyncSender<Vec<IndexEvent>>,
    /// When the indexer commits, and what a search waits for.
    freshness: Arc<Freshness>,
    /// Searches per user.
    limiter: crate::limits::Limit,
    /// Completions per user: a budget of their own, as a search box asks for them per
    /// keystroke.
    suggestions: crate::limits::Limit,
    /// Conversations whose events the feed dropped, to replay from storage.
    behind: Mutex<BTreeSet<(String, String)>>,
    /// Whether the backfill from storage at start has finished.
    backfilled: std::sync::atomic::AtomicBool,
    /// The reader of the event stream, with a Kafka event stream.
    #[cfg(feature = "kafka")]
    follower: Mutex<Option<stream::Follower>>,
}

impl std::fmt::Debug for SearchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchService").finish_non_exhaustive()
    }
}

/// The index event of a durable event (read back from storage), taking its text.
fn index_event(event: StoredEvent) -> IndexEvent {
    let StoredEvent {
        tenant,
        conversation,
        seq,
        ts,
        body,
    } = event;
    match body {
        EventBody::Message(posted) => IndexEvent::Posted {
            tenant,
            conversation,
            id: posted.id,
            seq,
            author: posted.author,
            body: posted.body,
            ts,
            attachments: !posted.attachments.is_empty(),
        },
        EventBody::MessageEdited { message, body, .. } => IndexEvent::Edited {
            tenant,
            conversation,
            message,
            seq,
            body,
        },
        EventBody::MessageDeleted { message, .. } => IndexEvent::Deleted {
            tenant,
            conversation,
            message,
            seq,
        },
        _ => IndexEvent::Other {
            tenant,
            conversation,
            seq,
        },
    }
}

/// The index event of an event read from the stream: the same as [`index_event`] of the
/// stored event it was published from.
pub fn stream_index_event(event: StreamEvent) -> IndexEvent {
    let StreamEvent {
        tenant,
        conversation,
        seq,
        ts,
        frame,
    } = event;
    match frame {
        ServerFrame::Message(posted) => IndexEvent::Posted {
            tenant,
            conversation,
            id: posted.id,
            seq,
            author: posted.author,
            body: posted.body,
            ts,
            attachments: !posted.attachments.is_empty(),
        },
        ServerFrame::MessageEdited { message, body, .. } => IndexEvent::Edited {
            tenant,
            conversation,
            message,
            seq,
            body,
        },
        ServerFrame::MessageDeleted { message, .. } => IndexEvent::Deleted {
            tenant,
            conversation,
            message,
            seq,
        },
        _ => IndexEvent::Other {
            tenant,
            conversation,
            seq,
        },
    }
}

impl SearchService {
    /// Opens (or creates) the index in `dir` and starts its indexer thread, which commits every
    /// `commit_interval` while there is something to commit (never idle: see [`Freshness`]).
    pub fn start(dir: &Path, commit_interval: Duration) -> anyhow::Result<SearchService> {
        let freshness = Freshness::new(commit_interval, Duration::ZERO);
        SearchService::start_with_budget(dir, freshness, 50 * 1024 * 1024)
    }

    /// [`SearchService::start`] with its commit policy and the index writer's memory budget in
    /// bytes.
    pub fn start_with_budget(
        dir: &Path,
        freshness: Freshness,
        budget: usize,
    ) -> anyhow::Result<SearchService> {
        let freshness = Arc::new(freshness);
        let policy = freshness.clone();
        let (feed, events) = std::sync::mpsc::sync_channel(FEED_QUEUE);
        let (opened, index) = std::sync::mpsc::sync_channel(1);
        let owned = dir.to_owned();
        std::thread::Builder::new()
            .name("confab-indexer".to_owned())
            .spawn(move || {
                // Indexing yields to chat: this thread, and every thread tantivy starts from
                // it (its indexing, merge and doc store threads inherit the nice value), runs
                // below the sessions and the store's writer, so a merge no longer takes a core
                // from message delivery (a message is still searchable within a second or so
                // of its ack; the cores are idle far more often than not).
                if let Err(err) = rustix::process::setpriority_process(None, INDEXING_NICE) {
                    tracing::warn!(%err, "cannot lower the search indexer's priority");
                }
                let index = match SearchIndex::open_with_budget(&owned, budget, Writers::Live) {
                    Ok(index) => Arc::new(index),
                    Err(err) => {
                        let _ = opened.send(Err(err));
                        return;
                    }
                };
                if opened.send(Ok(Arc::clone(&index))).is_ok() {
                    run_indexer(&index, &events, &policy);
                }
            })?;
        let index = index
            .recv()
            .map_err(|_| anyhow::anyhow!("the search indexer thread stopped"))??;
        reindex::remove_leftovers(dir);
        Ok(SearchService {
            index,
            dir: dir.to_owned(),
            budget,
            reindexes: reindex::Reindexes::default(),
            feed,
            freshness,
            limiter: crate::limits::Limit::per_minute(0, "searches"),
            suggestions: crate::limits::Limit::per_minute(0, "suggestions"),
            behind: Mutex::new(BTreeSet::new()),
            backfilled: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "kafka")]
            follower: Mutex::new(None),
        })
    }

    /// The index of `config`'s data dir, committing every `search_commit_interval`.
    pub fn for_config(config: &crate::config::Config) -> anyhow::Result<Arc<SearchService>> {
        let dir = config
            .search_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join(SEARCH_DIR));
        let budget = usize::try_from(config.search_memory_budget).unwrap_or(usize::MAX);
        let freshness = Freshness::new(config.search_commit_interval, config.search_idle_after);
        let mut service =
            SearchService::start_with_budget(&dir, freshness, budget).map_err(|err| {
                err.context(format!("cannot open the search index in {}", dir.display()))
            })?;
        service
            .index
            .set_query_concurrency(usize::from(config.search_query_concurrency));
        service.limiter = crate::limits::Limit::per_minute(config.search_per_minute, "searches");
        service.suggestions =
            crate::limits::Limit::per_minute(config.search_suggestions_per_minute, "suggestions");
        #[cfg(feature = "kafka")]
        service.follow_stream(config, &dir)?;
        Ok(Arc::new(service))
    }

    /// With a Kafka event stream, starts reading it into the index.
    #[cfg(feature = "kafka")]
    fn follow_stream(&mut self, config: &crate::config::Config, dir: &Path) -> anyhow::Result<()> {
        let crate::config::EventsBackend::Kafka(url) = &config.events else {
            return Ok(());
        };
        let group = match &config.search_consumer_group {
            Some(group) => group.clone(),
            None => stream::default_group(dir)?,
        };
        let settings = stream::Settings {
            url: crate::events::KafkaUrl::parse(url)?,
            topic: config.events_topic.clone(),
            dead_letter_topic: config.dead_letter_topic(),
            group,
            commit_interval: config.search_commit_interval,
        };
        let follower = stream::Follower::start(settings, self.index.clone())?;
        *self
            .follower
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = Some(follower);
        Ok(())
    }

    /// Stops reading the event stream, if it does, once what was read is committed. Blocks:
    /// call it off the async runtime.
    pub fn close(&self) {
        #[cfg(feature = "kafka")]
        if let Some(follower) = self
            .follower
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            follower.stop();
        }
    }

    /// Called by every search and completion before it reads the index: keeps the index
    /// committing every `search_commit_interval`, and, when it was idle with events waiting
    /// longer than that, wakes the indexer and waits for its commit (see [`Freshness`]).
    pub async fn fresh(&self) {
        let ask = self.freshness.searching(Instant::now());
        if ask == Ask::Nothing {
            return;
        }
        // An empty batch wakes the indexer to look at the policy again; a full queue means it
        // is awake anyway.
        let _ = self.feed.try_send(Vec::new());
        if let Ask::WaitFor(commits) = ask {
            self.freshness
                .until_committed(commits, self.freshness.wait_limit())
                .await;
        }
    }

    /// Takes one search from the user's budget, or refuses with `rate_limited` and when to
    /// retry.
    pub fn check_rate(&self, user: &AuthUser) -> Result<(), AppError> {
        self.limiter.check(user)
    }

    /// Takes one completion from the user's budget of suggestions (apart from searches), or
    /// refuses with `rate_limited` and when to retry.
    pub fn check_suggestion_rate(&self, user: &AuthUser) -> Result<(), AppError> {
        self.suggestions.check(user)
    }

    /// Forgets the budgets of users idle for a while (called every minute).
    pub fn forget_idle(&self) {
        self.limiter.forget_idle();
        self.suggestions.forget_idle();
    }

    /// Hands a committed batch's index events to the indexer; never waits (a full queue drops
    /// them, counted, and says so in the log).
    pub fn feed(&self, batch: Vec<IndexEvent>) {
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
                behind.extend(batch.iter().map(|event| {
                    let (tenant, conversation) = event.conversation();
                    (tenant.to_owned(), conversation.to_owned())
                }));
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The store's sink: renders each committed event once, feeds the index, then hands the
    /// rendered events to `inner` (the hub, or the hub and the event stream).
    pub fn sink(self: &Arc<Self>, inner: Arc<dyn RenderedSink>) -> Arc<dyn EventSink> {
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
                let Some(page) = replay_page(
                    &self.index,
                    store,
                    &tenant,
                    &conversation,
                    after,
                    BACKFILL_PAGE,
                )
                .await?
                else {
                    break;
                };
                replayed += page.events;
                after = page.last;
            }
        }
        if replayed > 0 {
            let index = self.index.clone();
            tokio::task::spawn_blocking(move || index.commit()).await??;
        }
        Ok(replayed)
    }
}

/// What one page of a replay from storage applied.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// The seq of the page's last event.
    pub last: u64,
    pub events: u64,
    /// `message` events among them: messages.
    pub messages: u64,
}

/// Reads the next page (at most `limit` events) of `conversation`'s events after `after` from
/// storage and applies it to `index` off the async runtime; `None` when there are none. The
/// one way events are replayed from storage: the backfill at start, the replay of what the
/// feed dropped, and a tenant's reindex.
pub async fn replay_page(
    index: &Arc<SearchIndex>,
    store: &DynStore,
    tenant: &str,
    conversation: &str,
    after: u64,
    limit: u32,
) -> anyhow::Result<Option<Page>> {
    let (events, _) = store
        .conversation_events(tenant, conversation, after, limit)
        .await?;
    let Some(last) = events.last().map(|event| event.seq) else {
        return Ok(None);
    };
    let batch: Vec<IndexEvent> = events.into_iter().map(index_event).collect();
    let page = Page {
        last,
        events: batch.len() as u64,
        messages: batch
            .iter()
            .filter(|event| matches!(event, IndexEvent::Posted { .. }))
            .count() as u64,
    };
    let index = index.clone();
    tokio::task::spawn_blocking(move || index.apply(batch)).await??;
    Ok(Some(page))
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
            Ok(events) => {
                if events > 0 {
                    tracing::info!(events, "search index backfilled from storage");
                }
                search
                    .backfilled
                    .store(true, std::sync::atomic::Ordering::Release);
            }
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

impl SearchService {
    /// What `/ready` says of the index.
    pub fn health(&self) -> confab_protocol::rest::SearchHealth {
        let backfilled = self.backfilled.load(std::sync::atomic::Ordering::Acquire);
        let behind = self
            .behind
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        confab_protocol::rest::SearchHealth {
            state: if backfilled { "ready" } else { "backfilling" }.to_owned(),
            documents: self.index.documents(),
            conversations_behind: behind as u64,
        }
    }
}

/// A sink that renders, feeds the index, then hands the rendered events to the sink behind it.
struct Indexed {
    inner: Arc<dyn RenderedSink>,
    search: Arc<SearchService>,
}

impl EventSink for Indexed {
    /// On the store's writer thread, once per committed batch. The index events take the text
    /// of the frames just rendered, which are dropped otherwise: the event is not copied for
    /// the index first.
    fn publish(&self, events: Vec<StoredEvent>) {
        let mut batch = Vec::with_capacity(events.len());
        let rendered = render_all_with(events, |event, frame| {
            batch.push(stream_index_event(StreamEvent {
                tenant: event.tenant.clone(),
                conversation: event.conversation.clone(),
                seq: event.seq,
                ts: event.ts,
                frame,
            }));
        });
        self.search.feed(batch);
        self.inner.publish_rendered(rendered);
    }
}

/// The indexer: applies batches as they come, commits at most every `interval`.
/// Applies what the feed brings and commits as `freshness` says. An empty batch only wakes
/// it (a search asking for a commit).
fn run_indexer(index: &SearchIndex, events: &Receiver<Vec<IndexEvent>>, freshness: &Freshness) {
    let mut dirty_since: Option<Instant> = None;
    loop {
        let wait = dirty_since.map_or(Duration::from_secs(3600), |since| {
            freshness
                .period(Instant::now())
                .saturating_sub(since.elapsed())
        });
        match events.recv_timeout(wait) {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                // Dirty from when the events came, not from when they are applied: a commit
                // stays due `period` after the first of them.
                let received = Instant::now();
                let since = *dirty_since.get_or_insert(received);
                let due = freshness.period(received).saturating_sub(since.elapsed());
                let (batch, ended) = gather(batch, events, GATHER.min(due));
                match index.apply(batch) {
                    Ok(changed) => crate::metrics::search_indexed(changed),
                    Err(err) => tracing::error!(error = %err, "cannot index events"),
                }
                freshness.applied(received);
                if ended {
                    commit(index, freshness);
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                commit(index, freshness);
                return;
            }
        }
        if dirty_since.is_some_and(|since| since.elapsed() >= freshness.period(Instant::now())) {
            commit(index, freshness);
            dirty_since = None;
        }
    }
}

/// How long the indexer lets events gather after the first of a batch before it applies them
/// (less when a commit is due sooner). At 1,000 messages/s over many conversations the store
/// commits them one or two at a time, and the indexer and tantivy's indexing thread each woke
/// for every one: about 2 % of the node's CPU in wake-ups and scheduling alone. Gathered,
/// they wake about 100 times a second at any rate. Searches see nothing later: a commit is
/// due an interval after the events came, whenever they are applied.
const GATHER: Duration = Duration::from_millis(10);
/// Events past which a gathered batch is applied without taking more (a backlog is applied in
/// pieces, not copied into one).
const GATHER_MOST: usize = 4096;

/// `first` and whatever else the feed brought after `wait` (a sleep: waking for each batch
/// is what this saves), in order; and whether the feed has ended (the store closed). A
/// search's wake-up (an empty batch) meanwhile waits for the end of the sleep.
fn gather(
    mut first: Vec<IndexEvent>,
    events: &Receiver<Vec<IndexEvent>>,
    wait: Duration,
) -> (Vec<IndexEvent>, bool) {
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
    while first.len() < GATHER_MOST {
        match events.try_recv() {
            Ok(more) => first.extend(more),
            Err(TryRecvError::Empty) => return (first, false),
            Err(TryRecvError::Disconnected) => return (first, true),
        }
    }
    (first, false)
}

fn commit(index: &SearchIndex, freshness: &Freshness) {
    let started = Instant::now();
    match index.commit() {
        Ok(()) => crate::metrics::search_commit(started.elapsed()),
        Err(err) => tracing::error!(error = %err, "cannot commit the search index"),
    }
    // A failed commit counts too: the searches waiting for it go on with what is committed.
    freshness.committed(started);
}

#[cfg(test)]
mod tests {
    use confab_protocol::rest::Attachment;
    use confab_protocol::{EventBody, Posted};

    use super::*;
    use crate::events::decode::{Decoded, decode};
    use crate::events::{Record, Rendered};

    fn stored(seq: u64, body: EventBody) -> StoredEvent {
        StoredEvent {
            tenant: "acme".into(),
            conversation: "c-1".into(),
            seq,
            ts: 1_700_000_000_000 + seq as i64,
            body,
        }
    }

    /// What a node reading the stream indexes equals what the node that committed the event
    /// indexed from its store's sink.
    #[test]
    fn a_produced_record_indexes_like_its_stored_event() {
        let attachment = Attachment {
            id: "f-1".into(),
            name: Some("a.png".into()),
            mime: Some("image/png".into()),
            size: Some(3),
        };
        let events = [
            EventBody::Message(Posted {
                id: "m-1".into(),
                author: "ann".into(),
                body: "the rocket launch".into(),
                client_msg_id: "x".into(),
                reply_to: Some("m-0".into()),
                attachments: vec![attachment],
            }),
            EventBody::MessageEdited {
                message: "m-1".into(),
                author: "ann".into(),
                body: "the launch is off".into(),
            },
            EventBody::MessageDeleted {
                message: "m-1".into(),
                by: "bob".into(),
            },
            EventBody::ReactionAdded {
                message: "m-1".into(),
                user: "bob".into(),
                emoji: "🚀".into(),
            },
        ];
        for (seq, body) in (1..).zip(events) {
            let event = stored(seq, body);
            let rendered = Rendered::render(event.clone()).expect("render");
            let record = Record::encode(&rendered).expect("encode");
            let Decoded::Event(read) = decode(Some(&record.payload)).expect("decode") else {
                panic!("a conversation's event");
            };
            let from_storage = index_event(event.clone());
            assert_eq!(stream_index_event(*read), from_storage, "seq {seq}");
            // What the store's sink feeds, from the frame it rendered.
            let (rendered, frame) = Rendered::render_keeping(event).expect("render");
            let fed = stream_index_event(StreamEvent {
                tenant: rendered.tenant,
                conversation: rendered.conversation,
                seq: rendered.seq,
                ts: rendered.ts,
                frame,
            });
            assert_eq!(fed, from_storage, "seq {seq}");
        }
    }

    fn other(seq: u64) -> IndexEvent {
        IndexEvent::Other {
            tenant: "t".to_owned(),
            conversation: "c".to_owned(),
            seq,
        }
    }

    fn seqs(batch: &[IndexEvent]) -> Vec<u64> {
        batch
            .iter()
            .map(|event| match event {
                IndexEvent::Other { seq, .. } => *seq,
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn the_indexer_takes_what_came_during_its_wait_in_one_batch_in_order() {
        let (feed, events) = std::sync::mpsc::sync_channel(16);
        let sending = std::thread::spawn(move || {
            for seq in 2..=4 {
                feed.send(vec![other(seq)]).expect("send");
            }
            feed
        });
        let feed = sending.join().expect("no panic");
        let (batch, ended) = gather(vec![other(1)], &events, Duration::from_millis(1));
        assert_eq!(seqs(&batch), [1, 2, 3, 4]);
        assert!(!ended);
        drop(feed);
        let (batch, ended) = gather(vec![other(5)], &events, Duration::ZERO);
        assert_eq!(seqs(&batch), [5]);
        assert!(ended, "a closed feed ends the indexer");
    }

    #[test]
    fn a_backlog_is_gathered_in_pieces() {
        let (feed, events) = std::sync::mpsc::sync_channel(GATHER_MOST + 2);
        for seq in 0..GATHER_MOST as u64 + 2 {
            feed.send(vec![other(seq)]).expect("send");
        }
        let (batch, _) = gather(Vec::new(), &events, Duration::ZERO);
        assert_eq!(batch.len(), GATHER_MOST);
        let (rest, ended) = gather(Vec::new(), &events, Duration::ZERO);
        assert_eq!(seqs(&rest), [GATHER_MOST as u64, GATHER_MOST as u64 + 1]);
        assert!(!ended);
    }
}
