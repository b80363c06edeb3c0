//! A tenant's reindex (`POST /v1/admin/reindex`): its documents rebuilt from storage beside
//! the live index, then swapped in, while searches go on.
//!
//! The index is one for all tenants; a reindex rebuilds only the caller's tenant's documents.
//! 1. Build: every conversation of the tenant is replayed from storage (the same
//!    [`super::replay_page`] as the backfill at start) into an index of its own in
//!    `<search dir>/reindex-<job>`, paced by `search_reindex_events_per_second`.
//! 2. Swap, on a blocking thread: the live index's writer is taken (the feed waits; searches
//!    go on), what storage committed since the build read its positions is replayed into the
//!    rebuilt index, and [`confab_search::Swap::replace_tenant`] makes the tenant's documents
//!    the rebuilt ones in one commit. An event the live index was given had been committed to
//!    storage before, so it is in that last replay: nothing that arrived during the rebuild is
//!    lost, and events after it reach the live index once the writer is free.
//!
//! Jobs live in this node's memory (the last [`KEPT`] per tenant); a restart forgets them and
//! removes the half-built indexes left behind.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use confab_protocol::ErrorCode;
use confab_protocol::rest::ReindexJob;
use confab_search::{SearchIndex, Swapped, Writers};
use confab_storage::DynStore;
use tokio_util::sync::CancellationToken;

use super::{SearchService, replay_page};
use crate::error::AppError;

/// Finished jobs kept per tenant (with the running one).
pub const KEPT: usize = 10;

/// The name of a reindex's index dir, before its job id.
const DIR_PREFIX: &str = "reindex-";

/// Events read from storage per request, unpaced.
const PAGE: u32 = 500;

/// One job: its state as the API shows it.
#[derive(Debug)]
struct Job {
    tenant: Arc<str>,
    view: Mutex<ReindexJob>,
}

impl Job {
    fn update(&self, change: impl FnOnce(&mut ReindexJob)) {
        change(&mut self.view.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn view(&self) -> ReindexJob {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The reindex jobs of this node, by tenant, newest first.
#[derive(Debug, Default)]
pub struct Reindexes {
    jobs: Mutex<HashMap<Arc<str>, VecDeque<Arc<Job>>>>,
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

impl Reindexes {
    /// Registers a new running job for `tenant`, or refuses with `conflict` while one runs.
    fn begin(&self, tenant: &Arc<str>) -> Result<Arc<Job>, AppError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let list = jobs.entry(tenant.clone()).or_default();
        if let Some(running) = list.iter().find(|job| job.view().state == "running") {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!(
                    "a reindex of this tenant is running: /v1/admin/reindex/{}",
                    running.view().id
                ),
            ));
        }
        let job = Arc::new(Job {
            tenant: tenant.clone(),
            view: Mutex::new(ReindexJob {
                id: uuid::Uuid::now_v7().simple().to_string(),
                state: "running".to_owned(),
                events: 0,
                events_total: 0,
                documents: 0,
                changed: 0,
                started_at: now_millis(),
                finished_at: None,
                error: None,
            }),
        });
        list.push_front(job.clone());
        list.truncate(KEPT);
        Ok(job)
    }

    /// `tenant`'s jobs, newest first.
    pub fn list(&self, tenant: &str) -> Vec<ReindexJob> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.get(tenant)
            .map(|list| list.iter().map(|job| job.view()).collect())
            .unwrap_or_default()
    }

    /// `tenant`'s job `id` (another tenant's is not found).
    pub fn get(&self, tenant: &str, id: &str) -> Option<ReindexJob> {
        self.list(tenant).into_iter().find(|job| job.id == id)
    }
}

/// Removes the indexes of reindexes a stop interrupted.
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(DIR_PREFIX)
            && let Err(err) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(error = %err, dir = %entry.path().display(), "cannot remove an interrupted reindex");
        }
    }
}

/// What a reindex needs of the server.
pub struct Context {
    pub search: Arc<SearchService>,
    pub store: DynStore,
    /// Events read per second at most; 0: unpaced.
    pub events_per_second: u32,
    pub shutdown: CancellationToken,
}

/// Starts a reindex of `tenant` in the background and returns its job as it starts, or
/// `conflict` while one runs.
pub fn start(context: Context, tenant: &Arc<str>) -> Result<ReindexJob, AppError> {
    let job = context.search.reindexes.begin(tenant)?;
    let view = job.view();
    tokio::spawn(run(context, job));
    Ok(view)
}

/// Why a reindex failed; the text is what the job shows (details go to the log).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("cannot read storage or write the index")]
    Work(#[from] anyhow::Error),
}

async fn run(context: Context, job: Arc<Job>) {
    let started = Instant::now();
    let id = job.view().id;
    let dir = dir_of(&context.search.dir, &id);
    tracing::info!(tenant = %job.tenant, job = %id, "reindex started");
    let outcome = rebuild(&context, &job, &dir).await;
    let removed = dir.clone();
    match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(removed)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, dir = %dir.display(), "cannot remove a reindex's index")
        }
        Err(err) => tracing::warn!(error = %err, "cannot remove a reindex's index"),
    }
    let elapsed = started.elapsed();
    match outcome {
        Ok(swapped) => {
            crate::metrics::search_reindex("done", elapsed, swapped.changed);
            tracing::info!(tenant = %job.tenant, job = %id, documents = swapped.documents,
                changed = swapped.changed, seconds = elapsed.as_secs_f64(), "reindex done");
            job.update(|view| {
                view.state = "done".to_owned();
                view.documents = swapped.documents;
                view.changed = swapped.changed;
                view.finished_at = Some(now_millis());
            });
        }
        Err(failure) => {
            crate::metrics::search_reindex("failed", elapsed, 0);
            match &failure {
                Failure::Work(err) => {
                    tracing::error!(tenant = %job.tenant, job = %id, error = %format!("{err:#}"), "reindex failed")
                }
                Failure::ShuttingDown => {
                    tracing::info!(tenant = %job.tenant, job = %id, "reindex stopped by the shutdown")
                }
            }
            job.update(|view| {
                view.state = "failed".to_owned();
                view.error = Some(failure.to_string());
                view.finished_at = Some(now_millis());
            });
        }
    }
}

/// The tenant's conversations and their last seq.
async fn positions(store: &DynStore, tenant: &str) -> anyhow::Result<Vec<(String, u64)>> {
    Ok(store
        .conversation_positions()
        .await?
        .into_iter()
        .filter(|(of, _, _)| of == tenant)
        .map(|(_, conversation, last)| (conversation, last))
        .collect())
}

/// Builds the tenant's documents beside the live index, then swaps them in.
async fn rebuild(context: &Context, job: &Arc<Job>, dir: &Path) -> Result<Swapped, Failure> {
    let (owned, budget) = (dir.to_owned(), context.search.budget);
    let rebuilt = tokio::task::spawn_blocking(move || -> anyhow::Result<SearchIndex> {
        if owned.exists() {
            std::fs::remove_dir_all(&owned)?;
        }
        Ok(SearchIndex::open_with_budget(
            &owned,
            budget,
            Writers::Bulk,
        )?)
    })
    .await
    .map_err(anyhow::Error::from)??;
    let rebuilt = Arc::new(rebuilt);
    let tenant = job.tenant.clone();
    let read = positions(&context.store, &tenant).await?;
    let total = read.iter().map(|(_, last)| *last).sum::<u64>();
    job.update(|view| view.events_total = total);
    let mut pace = Pace::new(context.events_per_second);
    for (conversation, last) in &read {
        let mut after = 0;
        while after < *last {
            if context.shutdown.is_cancelled() {
                return Err(Failure::ShuttingDown);
            }
            // Up to the positions read, no further (seqs have no gaps): what came later is
            // the catch-up's, under the writer.
            let limit = pace
                .page
                .min(u32::try_from(last - after).unwrap_or(u32::MAX));
            let page = replay_page(
                &rebuilt,
                &context.store,
                &tenant,
                conversation,
                after,
                limit,
            )
            .await?;
            let Some(page) = page else { break };
            after = page.last;
            job.update(|view| {
                view.events += page.events;
                view.documents += page.messages;
            });
            pace.wait(page.events, &context.shutdown).await;
        }
    }
    let committing = rebuilt.clone();
    tokio::task::spawn_blocking(move || committing.commit())
        .await
        .map_err(anyhow::Error::from)?
        .map_err(anyhow::Error::from)?;
    swap(context, job, rebuilt, read).await
}

/// Takes the live index's writer, replays into `rebuilt` what storage committed since `read`
/// was read, and swaps the tenant's documents.
async fn swap(
    context: &Context,
    job: &Arc<Job>,
    rebuilt: Arc<SearchIndex>,
    read: Vec<(String, u64)>,
) -> Result<Swapped, Failure> {
    let (search, store, job) = (context.search.clone(), context.store.clone(), job.clone());
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Swapped> {
        let swap = search.index.begin_swap();
        let held = Instant::now();
        // Storage I/O while the writer is held: the feed waits, searches do not.
        let caught_up = runtime.block_on(catch_up(&rebuilt, &store, &job, &read))?;
        rebuilt.commit()?;
        let swapped = swap.replace_tenant(&job.tenant, &rebuilt)?;
        // How long new events waited to be indexed.
        tracing::info!(tenant = %job.tenant, caught_up, seconds = held.elapsed().as_secs_f64(),
            "reindex swapped under the index writer");
        Ok(swapped)
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(Failure::Work)
}

/// Replays into `rebuilt` every event of the tenant after the positions the build read.
async fn catch_up(
    rebuilt: &Arc<SearchIndex>,
    store: &DynStore,
    job: &Job,
    read: &[(String, u64)],
) -> anyhow::Result<u64> {
    let before: HashMap<&str, u64> = read.iter().map(|(c, last)| (c.as_str(), *last)).collect();
    let mut replayed = 0;
    for (conversation, last) in positions(store, &job.tenant).await? {
        let mut after = before.get(conversation.as_str()).copied().unwrap_or(0);
        while after < last {
            let Some(page) =
                replay_page(rebuilt, store, &job.tenant, &conversation, after, PAGE).await?
            else {
                break;
            };
            after = page.last;
            replayed += page.events;
            job.update(|view| {
                view.events += page.events;
                view.documents += page.messages;
            });
        }
    }
    Ok(replayed)
}

/// Keeps reading at most `per_second` events a second (0: no limit).
struct Pace {
    per_second: u32,
    /// Events per read.
    page: u32,
    started: Instant,
    done: u64,
}

impl Pace {
    fn new(per_second: u32) -> Pace {
        Pace {
            per_second,
            // About five reads a second when paced.
            page: if per_second == 0 {
                PAGE
            } else {
                (per_second / 5).clamp(1, PAGE)
            },
            started: Instant::now(),
            done: 0,
        }
    }

    /// After `events` more were read: sleeps until they are within the pace (or shutdown).
    async fn wait(&mut self, events: u64, shutdown: &CancellationToken) {
        self.done += events;
        if self.per_second == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.done as f64 / f64::from(self.per_second));
        let Some(wait) = due.checked_sub(self.started.elapsed()) else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

/// Where a reindex of job `id` builds its index.
pub fn dir_of(search_dir: &Path, id: &str) -> PathBuf {
    search_dir.join(format!("{DIR_PREFIX}{id}"))
}
