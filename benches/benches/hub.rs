//! Hub fan-out of one committed event to 1, 100 and 10,000 local subscribers (no network): the
//! `RenderedSink::publish_rendered` path the SQLite writer's sink ends in after each commit. Each subscriber's queue
//! is drained between batches, outside the timed section, as its session would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_protocol::EventKind;
use confab_protocol::ServerFrame;
use confab_protocol::frames::MessageEvent;
use confab_server::events::{Rendered, RenderedSink};
use confab_server::hub::{Hub, Outbound, Subscriber};
use confab_server::outbox::Outbox;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Events published between two drains: below the sessions' queue size (1024), so no one is
/// ever cut off as a slow consumer.
const BATCH: u64 = 256;

fn frame(seq: u64) -> String {
    serde_json::to_string(&ServerFrame::Message(MessageEvent {
        conversation: "0192f3a1b2c3d4e5f60718293a4b5c6d".into(),
        id: "0192f3a1b2c3d4e5f60718293a4b5c6e".into(),
        seq,
        author: "alice".into(),
        body: "hello there, how are you doing today?".into(),
        ts: 1_764_000_000_000,
        client_msg_id: "7f1c".into(),
        reply_to: None,
        attachments: vec![],
    }))
    .expect("serialize")
}

fn fanout(c: &mut Criterion) {
    // The server publishes with its Prometheus recorder installed; so do we.
    let _ = confab_server::metrics::install();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let tenant: Arc<str> = "acme".into();
    let conversation: Arc<str> = "0192f3a1b2c3d4e5f60718293a4b5c6d".into();
    let text = frame(1);
    let mut group = c.benchmark_group("hub_fanout");
    group.sample_size(30);
    for subscribers in [1usize, 100, 10_000] {
        let hub = Hub::new();
        let mut receivers = Vec::with_capacity(subscribers);
        for i in 0..subscribers {
            let outbox = Arc::new(Outbox::new(1024));
            hub.subscribe(
                &tenant,
                &conversation,
                Subscriber {
                    conn: hub.next_conn_id(),
                    user: format!("u{i}").into(),
                    outbox: outbox.clone(),
                },
            );
            receivers.push(outbox);
        }
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            let mut seq = 0u64;
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let batch = BATCH.min(iters - done);
                    // The frame text is built before the clock starts: it is rendered once per
                    // event at commit, not per subscriber.
                    let events: Vec<Rendered> = (0..batch)
                        .map(|_| {
                            seq += 1;
                            Rendered {
                                tenant: tenant.to_string(),
                                conversation: conversation.to_string(),
                                seq,
                                kind: EventKind::Message,
                                subject: None,
                                ts: 0,
                                frame: text.clone(),
                            }
                        })
                        .collect();
                    let started = Instant::now();
                    for event in events {
                        hub.publish_rendered(vec![event]);
                    }
                    timed += started.elapsed();
                    for outbox in &receivers {
                        while let Some(item) = outbox.try_pop() {
                            assert!(matches!(item, Outbound::Event(_)));
                        }
                    }
                    done += batch;
                }
                timed
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
