//! SQLite append throughput with group commit: acked (durable, `synchronous=FULL`) messages per
//! second with 1, 16 and 256 concurrent senders, and seq assignment under contention (256
//! senders on one conversation, whose seq row every append bumps, against 256 senders on 256
//! conversations). The database lives under the target dir, on a real disk: fsync is the point.
//!
//! The sink renders every committed event's frame, as the server's hub does on the writer's
//! thread (the store keeps events in their storage form; before it did, the writer serialized
//! each frame inside the transaction instead).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confab_protocol::rest::ConversationKind;
use confab_storage::sqlite::{SqliteOptions, SqliteStore};
use confab_storage::{EventSink, NewConversation, NewMessage, Store, StoredEvent};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const TENANT: &str = "bench";

/// Renders each committed event's frame once and drops it, as the hub would before fan-out.
struct RenderingSink;

impl EventSink for RenderingSink {
    fn publish(&self, events: Vec<StoredEvent>) {
        for event in events {
            std::hint::black_box(event.render().expect("render"));
        }
    }
}

struct Fixture {
    store: Arc<SqliteStore>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    next_id: AtomicU64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let store = SqliteStore::open(
            &dir.path().join("bench.db"),
            Arc::new(RenderingSink),
            SqliteOptions::default(),
        )
        .expect("open store");
        // Like the server: a multi-threaded runtime (as many workers as cores).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Fixture {
            store: Arc::new(store),
            runtime,
            _dir: dir,
            next_id: AtomicU64::new(0),
        }
    }

    /// A group of `creator` and `members`; returns its id.
    fn conversation(&self, creator: &str, members: Vec<String>) -> String {
        let store = self.store.clone();
        let new = NewConversation {
            tenant: TENANT.into(),
            creator: creator.into(),
            kind: ConversationKind::Group,
            title: None,
            members,
        };
        self.runtime
            .block_on(store.create_conversation(new))
            .expect("create")
            .0
            .id
    }

    /// Appends `total` messages from `senders` concurrent tasks (sender `i` is `authors[i]` in
    /// `conversations[i]`), each awaiting its ack before sending again; returns the elapsed time.
    fn append(&self, total: u64, authors: &[(String, String)]) -> Duration {
        let senders = authors.len() as u64;
        let started = Instant::now();
        self.runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, (author, conversation)) in authors.iter().cloned().enumerate() {
                let store = self.store.clone();
                let share = total / senders + u64::from((i as u64) < total % senders);
                let first = self.next_id.fetch_add(share, Ordering::Relaxed);
                tasks.spawn(async move {
                    for n in first..first + share {
                        store
                            .append_message(NewMessage {
                                tenant: TENANT.into(),
                                conversation: conversation.clone(),
                                author: author.clone(),
                                client_msg_id: format!("m{n}"),
                                body: "hello there, how are you doing today?".into(),
                                reply_to: None,
                                attachments: vec![],
                                repeat_only: false,
                            })
                            .await
                            .expect("append");
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("sender task");
            }
        });
        started.elapsed()
    }
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    group
}

/// Acks per second with 1, 16 and 256 senders, each in its own conversation.
fn append_throughput(c: &mut Criterion) {
    let fixture = Fixture::new();
    let mut group = configure(c, "sqlite_append");
    for senders in [1usize, 16, 256] {
        let authors: Vec<(String, String)> = (0..senders)
            .map(|i| {
                let author = format!("a{senders}-{i}");
                let conversation = fixture.conversation(&author, vec![]);
                (author, conversation)
            })
            .collect();
        group.bench_function(BenchmarkId::new("senders", senders), |b| {
            b.iter_custom(|iters| fixture.append(iters, &authors));
        });
    }
    group.finish();
}

/// 256 senders bumping one conversation's seq, against 256 conversations.
fn seq_contention(c: &mut Criterion) {
    let fixture = Fixture::new();
    let senders = 256;
    let members: Vec<String> = (1..senders).map(|i| format!("s{i}")).collect();
    let shared = fixture.conversation("s0", members);
    let one_conversation: Vec<(String, String)> = (0..senders)
        .map(|i| (format!("s{i}"), shared.clone()))
        .collect();
    let own_conversations: Vec<(String, String)> = (0..senders)
        .map(|i| {
            let author = format!("o{i}");
            let conversation = fixture.conversation(&author, vec![]);
            (author, conversation)
        })
        .collect();
    let mut group = configure(c, "sqlite_seq_contention");
    group.bench_function("256_senders_1_conversation", |b| {
        b.iter_custom(|iters| fixture.append(iters, &one_conversation));
    });
    group.bench_function("256_senders_256_conversations", |b| {
        b.iter_custom(|iters| fixture.append(iters, &own_conversations));
    });
    group.finish();
}

criterion_group!(benches, append_throughput, seq_contention);
criterion_main!(benches);
