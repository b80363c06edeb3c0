//! The directory of people: who of a tenant has connected or called the API, under which name;
//! and, in the same record per user, how many WebSocket connections the user has open here.
//!
//! Every authenticated request would be a store write if recorded blindly; [`People`]
//! remembers, per (tenant, user), the name and time of the last write and writes again only
//! when the name changed or [`REFRESH`] has passed. A request never waits for the write: the
//! sighting joins a queue, and one task per node writes what is queued, up to [`BATCH`] at a
//! time, one write after the other. When a storm of clients reconnects at once (a deploy, a
//! network blip), every one of them is due (the last write is over a minute old): one write
//! each filled the store's queue ahead of the chat messages, and on a file shared by a dozen
//! nodes some messages waited out the busy timeout and were refused (benches/RESULTS.md,
//! issue 17). Sightings are the directory's last-seen times, not acknowledged data: past
//! [`MAX_QUEUED`] a sighting is dropped and the user is written at their next sighting. A batch
//! refused as busy is tried again, first, a few times: a user who stays connected is not
//! sighted again.
//!
//! One record per user, not a map per purpose: every connected user is in the directory (the
//! connection was sighted when it authenticated), so the per-user connection count (the cap in
//! [`crate::limits::Connections`]) and the user's sessions on this node (for user events, see
//! [`crate::hub::users`]) live in the same entry. Each idle connection of the `idle` bench paid
//! for three maps' entries, keys and table slack before (394 B with one user per connection).
//! The hub owns the map (it is built first) and hands it to the state.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use confab_storage::{DynStore, Sighting};
use dashmap::DashMap;

use crate::auth::AuthUser;
use crate::outbox::Outbox;

/// How often a user's last-seen time is written at most (unless their name changes).
pub const REFRESH: Duration = Duration::from_secs(60);

/// Most sightings in one store write.
pub const BATCH: usize = 512;

/// Most sightings waiting for their write; more are dropped (and written at the user's next
/// sighting).
pub const MAX_QUEUED: usize = 100_000;

/// How often a batch that failed retryably is tried again, and after how long.
const RETRIES: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A user: (tenant, user id).
pub type UserKey = (Arc<str>, Arc<str>);

/// The user's key, sharing the token's strings.
pub fn key(user: &AuthUser) -> UserKey {
    (user.tenant.clone(), user.user.clone())
}

/// What this node keeps per user. Small: an entry per user ever seen, 40 bytes (72 with its
/// key; the map's slack comes on top).
#[derive(Debug, Default)]
struct Person {
    /// The name last written to the directory (`None`: not written yet).
    written_name: Option<Arc<str>>,
    /// When `written_name` was written, in whole seconds on the map's clock (a refresh may come
    /// up to a second early). Beside the name rather than paired with it in an `Option`, so
    /// that it and `connections` share a word.
    written_at: u32,
    /// Open WebSocket connections here, upgrades in progress included.
    connections: u32,
    /// The user's sessions here, registered for user events: most users have one. A boxed
    /// slice of exactly its sessions: no capacity word, no spare slots.
    sessions: Box<[Registered]>,
}

/// A session registered for its user's events: its connection and its queue.
#[derive(Debug)]
struct Registered {
    conn: u64,
    outbox: Arc<Outbox>,
}

/// Every user this node has seen: the last directory write, and the open connections.
#[derive(Debug)]
pub struct People {
    users: DashMap<UserKey, Person>,
    /// Zero of the sighting times.
    epoch: Instant,
    /// Sightings waiting for their write.
    queue: Arc<Mutex<Queue>>,
}

impl Default for People {
    fn default() -> Self {
        People {
            users: DashMap::new(),
            epoch: Instant::now(),
            queue: Arc::default(),
        }
    }
}

/// The sightings to write, and whether a task is writing them.
#[derive(Debug, Default)]
struct Queue {
    sightings: Vec<Sighting>,
    /// A task is writing: it takes what is queued meanwhile, and stops when nothing is.
    writing: bool,
}

/// What became of a queued sighting.
#[derive(Debug, PartialEq, Eq)]
enum Queued {
    /// Queued; a task is already writing.
    Behind,
    /// Queued; nobody is writing: start the task.
    StartWriting,
    /// The queue is full: dropped.
    Dropped,
}

impl Queue {
    fn push(&mut self, sighting: Sighting) -> Queued {
        if self.sightings.len() >= MAX_QUEUED {
            return Queued::Dropped;
        }
        self.sightings.push(sighting);
        if std::mem::replace(&mut self.writing, true) {
            Queued::Behind
        } else {
            Queued::StartWriting
        }
    }

    /// Puts a batch that could not be written back at the front, to go first again (the task
    /// that took it is still writing).
    fn put_back(&mut self, batch: Vec<Sighting>) {
        self.sightings.splice(0..0, batch);
    }

    /// The next write's sightings, oldest first; none: the task stops (marked not writing).
    fn next_batch(&mut self) -> Option<Vec<Sighting>> {
        if self.sightings.is_empty() {
            self.writing = false;
            return None;
        }
        if self.sightings.len() <= BATCH {
            return Some(std::mem::take(&mut self.sightings));
        }
        Some(self.sightings.drain(..BATCH).collect())
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes the queued sightings, a batch at a time, until none is left.
async fn write_queued(queue: Arc<Mutex<Queue>>, store: DynStore) {
    drain(&queue, |batch| {
        let store = store.clone();
        async move { store.record_people(batch).await }
    })
    .await;
}

/// Writes the queue's batches with `write` until the queue is empty. A batch that fails
/// retryably (the store busy or unavailable, as in a storm on a shared file) goes back to the
/// front of the queue and is tried again after [`RETRY_AFTER`], up to [`RETRIES`] times: a user
/// who stays connected is not sighted again, and would otherwise be missing from the
/// directory (or keep an old name) until they reconnect a minute later.
async fn drain<W, F>(queue: &Mutex<Queue>, write: W)
where
    W: Fn(Vec<Sighting>) -> F,
    F: std::future::Future<Output = confab_storage::Result<()>>,
{
    let mut failures = 0;
    loop {
        // Taken under the lock, written without it: the guard ends with this statement.
        let next = lock(queue).next_batch();
        let Some(batch) = next else { return };
        let count = batch.len();
        let Err(err) = write(batch.clone()).await else {
            failures = 0;
            continue;
        };
        let retryable = err.code() == confab_protocol::ErrorCode::Unavailable;
        if retryable && failures < RETRIES {
            failures += 1;
            tracing::debug!(sightings = count, error = %err, failures, "sightings not recorded yet; retrying");
            lock(queue).put_back(batch);
            tokio::time::sleep(RETRY_AFTER).await;
        } else {
            failures = 0;
            tracing::warn!(sightings = count, error = %err, "cannot record sightings");
        }
    }
}

impl People {
    fn seconds(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    /// Whether `user`, seen under `name` at `now`, is due a write; if so, notes it as written.
    fn due(&self, user: &AuthUser, name: &Arc<str>, now: Instant) -> bool {
        let now = self.seconds(now);
        let key = key(user);
        let fresh = |person: &Person| {
            person.written_name.as_ref().is_some_and(|last_name| {
                last_name == name
                    && u64::from(now.saturating_sub(person.written_at)) < REFRESH.as_secs()
            })
        };
        // A shared look first: most calls find a fresh sighting. Its guard is dropped before
        // the entry below (same shard: it would deadlock). Two requests racing past the look
        // both write, which is harmless.
        if self.users.get(&key).is_some_and(|person| fresh(&person)) {
            return false;
        }
        let mut person = self.users.entry(key).or_default();
        person.written_name = Some(name.clone());
        person.written_at = now;
        true
    }

    /// Records `user` as seen now, in the background, if due (see the module docs).
    pub fn seen(&self, store: &DynStore, user: &AuthUser) {
        let name = user.name.clone().unwrap_or_else(|| user.user.clone());
        if !self.due(user, &name, Instant::now()) {
            return;
        }
        let sighting = Sighting {
            tenant: user.tenant.to_string(),
            user: user.user.to_string(),
            name: name.to_string(),
            seen_at: crate::media::now_ms(),
        };
        let queued = lock(&self.queue).push(sighting);
        match queued {
            Queued::Behind => {}
            Queued::StartWriting => {
                tokio::spawn(write_queued(self.queue.clone(), store.clone()));
            }
            Queued::Dropped => {
                // Due again at the next sighting.
                if let Some(mut person) = self.users.get_mut(&key(user)) {
                    person.written_name = None;
                }
                tracing::debug!(tenant = %user.tenant, user = %user.user, "sighting queue full; dropped");
            }
        }
    }

    /// Counts one more open connection of the user of `key`, unless that makes more than
    /// `max` (0: no cap). Returns whether it was counted.
    pub fn open_connection(&self, key: &UserKey, max: usize) -> bool {
        let mut person = self.users.entry(key.clone()).or_default();
        if max != 0 && person.connections as usize >= max {
            return false;
        }
        person.connections = person.connections.saturating_add(1);
        true
    }

    /// Gives back a connection counted by [`People::open_connection`].
    pub fn close_connection(&self, key: &UserKey) {
        if let Some(mut person) = self.users.get_mut(key) {
            person.connections = person.connections.saturating_sub(1);
        }
    }

    /// The user's open connections here.
    pub fn connections(&self, key: &UserKey) -> usize {
        self.users
            .get(key)
            .map_or(0, |person| person.connections as usize)
    }

    /// Registers a session of the user of `key` for user events.
    pub fn register(&self, key: UserKey, conn: u64, outbox: Arc<Outbox>) {
        let mut person = self.users.entry(key).or_default();
        // A block of exactly the user's sessions (every idle connection keeps this); a user's
        // sessions come and go rarely, so each change reallocates.
        let mut sessions = std::mem::take(&mut person.sessions).into_vec();
        sessions.reserve_exact(1);
        sessions.push(Registered { conn, outbox });
        person.sessions = sessions.into_boxed_slice();
    }

    /// Forgets a session of the user of `key` (idempotent).
    pub fn unregister(&self, key: &UserKey, conn: u64) {
        if let Some(mut person) = self.users.get_mut(key)
            && person.sessions.iter().any(|session| session.conn == conn)
        {
            let mut sessions = std::mem::take(&mut person.sessions).into_vec();
            sessions.retain(|session| session.conn != conn);
            person.sessions = sessions.into_boxed_slice();
        }
    }

    /// Calls `each` with the queue of every session of the user of `key` (under the map's
    /// shard lock: `each` must not call back into this map).
    pub fn sessions_of(&self, key: &UserKey, mut each: impl FnMut(&Arc<Outbox>)) {
        if let Some(person) = self.users.get(key) {
            person.sessions.iter().for_each(|s| each(&s.outbox));
        }
    }

    /// Calls `each` with the queue of every registered session (same rule as
    /// [`People::sessions_of`]). Visits every user seen, connected or not.
    pub fn each_session(&self, mut each: impl FnMut(&Arc<Outbox>)) {
        for person in &self.users {
            person.sessions.iter().for_each(|s| each(&s.outbox));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> AuthUser {
        AuthUser {
            expires_at: u64::MAX,
            user: Arc::from("alice"),
            tenant: Arc::from("acme"),
            name: Some(Arc::from(name)),
        }
    }

    #[test]
    fn writes_on_first_sight_on_rename_and_once_per_interval() {
        let sightings = People::default();
        let (alice, start) = (user("Alice"), Instant::now());
        let name: Arc<str> = Arc::from("Alice");
        assert!(sightings.due(&alice, &name, start));
        assert!(!sightings.due(&alice, &name, start + Duration::from_secs(1)));
        let renamed: Arc<str> = Arc::from("Alice L.");
        assert!(sightings.due(&alice, &renamed, start + Duration::from_secs(2)));
        assert!(!sightings.due(&alice, &renamed, start + Duration::from_secs(61)));
        assert!(sightings.due(&alice, &renamed, start + Duration::from_secs(63)));
    }

    fn sighting(user: &str) -> Sighting {
        Sighting {
            tenant: "acme".to_owned(),
            user: user.to_owned(),
            name: user.to_owned(),
            seen_at: 1,
        }
    }

    #[test]
    fn one_task_writes_the_queue_in_batches_oldest_first() {
        let mut queue = Queue::default();
        assert_eq!(queue.push(sighting("u0")), Queued::StartWriting);
        for i in 1..1_100 {
            assert_eq!(queue.push(sighting(&format!("u{i}"))), Queued::Behind);
        }
        let first = queue.next_batch().expect("first");
        assert_eq!((first.len(), first[0].user.as_str()), (BATCH, "u0"));
        assert_eq!(
            queue.push(sighting("late")),
            Queued::Behind,
            "still writing"
        );
        let second = queue.next_batch().expect("second");
        assert_eq!((second.len(), second[0].user.as_str()), (BATCH, "u512"));
        let third = queue.next_batch().expect("third");
        assert_eq!(third.len(), 1_101 - 2 * BATCH);
        assert_eq!(third.last().map(|s| s.user.as_str()), Some("late"));
        assert!(queue.next_batch().is_none());
        assert!(!queue.writing, "the task stopped");
        assert_eq!(queue.push(sighting("next")), Queued::StartWriting);
    }

    /// Runs `drain` over a queue of `users` with a writer that fails as `fail(call)` says
    /// (calls counted from 0), pushing `late` during the first call; returns the batches
    /// written, by user, and the number of calls.
    async fn drained(
        users: &[&str],
        late: &str,
        fail: impl Fn(usize) -> Option<confab_storage::StoreError>,
    ) -> (Vec<Vec<String>>, usize) {
        let queue = Mutex::new(Queue::default());
        for user in users {
            lock(&queue).push(sighting(user));
        }
        let written = Mutex::new(Vec::new());
        let calls = std::sync::atomic::AtomicUsize::new(0);
        drain(&queue, |batch| {
            let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if call == 0 {
                lock(&queue).push(sighting(late));
            }
            let outcome = match fail(call) {
                Some(err) => Err(err),
                None => {
                    let users = batch.into_iter().map(|s| s.user).collect();
                    written.lock().expect("written").push(users);
                    Ok(())
                }
            };
            async move { outcome }
        })
        .await;
        let queue = lock(&queue);
        assert!(
            queue.sightings.is_empty() && !queue.writing,
            "drained, stopped"
        );
        let written = written.into_inner().expect("written");
        (written, calls.into_inner())
    }

    /// A batch refused as busy goes back to the front and is written on a later try, with
    /// what came in meanwhile after it.
    #[tokio::test(start_paused = true)]
    async fn a_batch_refused_as_busy_is_tried_again_first() {
        let started = tokio::time::Instant::now();
        let busy = |call| (call < 2).then_some(confab_storage::StoreError::Busy);
        let (written, calls) = drained(&["u0", "u1", "u2"], "late", busy).await;
        assert_eq!(written, [["u0", "u1", "u2", "late"]]);
        assert_eq!(calls, 3);
        assert!(started.elapsed() >= 2 * RETRY_AFTER, "waited between tries");
    }

    /// A batch that stays refused is given up after the retries; one refused for a reason a
    /// retry cannot change is given up at once. The task goes on with what is queued.
    #[tokio::test(start_paused = true)]
    async fn a_batch_is_given_up_after_the_retries_or_at_once_when_retrying_cannot_help() {
        let always_busy =
            |call| (call <= RETRIES as usize).then_some(confab_storage::StoreError::Busy);
        // `late` joins the batch when it is put back, and is given up with it.
        let (written, calls) = drained(&["u0"], "late", always_busy).await;
        assert_eq!(calls as u32, RETRIES + 1, "the first try and the retries");
        assert!(written.is_empty(), "{written:?}");
        let invalid =
            |call| (call == 0).then(|| confab_storage::StoreError::Invalid("no".to_owned()));
        let (written, calls) = drained(&["u0"], "late", invalid).await;
        assert_eq!((written, calls), (vec![vec!["late".to_owned()]], 2));
    }

    /// A SQLite store in a temporary directory (kept while the directory is).
    fn sqlite_store() -> (DynStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let store = confab_storage::sqlite::SqliteStore::open(
            &dir.path().join("confab.db"),
            Arc::new(confab_storage::NullSink),
            confab_storage::sqlite::SqliteOptions::default(),
        )
        .expect("store");
        (Arc::new(store), dir)
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_sighting_and_the_user_is_due_again() {
        let (store, _dir) = sqlite_store();
        let people = People::default();
        {
            let mut queue = lock(&people.queue);
            queue.sightings = vec![sighting("someone"); MAX_QUEUED];
            queue.writing = true;
        }
        let alice = user("Alice");
        people.seen(&store, &alice);
        assert_eq!(lock(&people.queue).sightings.len(), MAX_QUEUED, "dropped");
        let name: Arc<str> = Arc::from("Alice");
        assert!(people.due(&alice, &name, Instant::now()), "due again");
    }

    /// Many users sighted at once are all written, by a few writes.
    #[tokio::test]
    async fn queued_sightings_all_reach_the_directory() {
        let (store, _dir) = sqlite_store();
        let people = People::default();
        for i in 0..2_000 {
            let mut someone = user(&format!("User {i}"));
            someone.user = Arc::from(format!("u{i:04}"));
            people.seen(&store, &someone);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let written = store.people("acme").await.expect("people");
            if written.len() == 2_000 {
                assert_eq!(written[1_999].name, "User 1999");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of 2000 written",
                written.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let queue = lock(&people.queue);
        assert!(queue.sightings.is_empty() && !queue.writing);
    }

    #[test]
    fn a_person_is_small() {
        assert_eq!(std::mem::size_of::<Person>(), 40);
        assert_eq!(std::mem::size_of::<(UserKey, Person)>(), 72);
    }

    #[test]
    fn sessions_are_kept_exactly() {
        let people = People::default();
        let key = key(&user("Alice"));
        let (one, two) = (Arc::new(Outbox::new(4)), Arc::new(Outbox::new(4)));
        people.register(key.clone(), 1, one.clone());
        people.register(key.clone(), 2, two.clone());
        let mut seen = Vec::new();
        people.sessions_of(&key, |outbox| seen.push(outbox.clone()));
        assert!(seen.len() == 2 && Arc::ptr_eq(&seen[0], &one) && Arc::ptr_eq(&seen[1], &two));
        people.unregister(&key, 1);
        people.unregister(&key, 1);
        let mut left = 0;
        people.sessions_of(&key, |outbox| {
            assert!(Arc::ptr_eq(outbox, &two));
            left += 1;
        });
        assert_eq!(left, 1);
        people.unregister(&key, 2);
        people.each_session(|_| panic!("no session left"));
    }

    #[test]
    fn a_user_has_one_record_for_sightings_and_connections() {
        let people = People::default();
        let alice = user("Alice");
        let key = key(&alice);
        assert!(people.open_connection(&key, 2));
        assert!(people.due(&alice, &Arc::from("Alice"), Instant::now()));
        assert!(people.open_connection(&key, 2));
        assert!(!people.open_connection(&key, 2), "at the cap");
        assert!(people.due(&alice, &Arc::from("Alice L."), Instant::now()));
        assert_eq!(people.connections(&key), 2, "a sighting keeps the count");
        assert_eq!(people.users.len(), 1);
        people.close_connection(&key);
        people.close_connection(&key);
        people.close_connection(&key);
        assert_eq!(people.connections(&key), 0);
        assert!(!people.due(&alice, &Arc::from("Alice L."), Instant::now()));
    }
}
