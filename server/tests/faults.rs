//! Faults under a sustained load: `kill -9` of a single node, of one node of two, and Redis
//! stopped for 10 s while clients keep sending. Each client behaves as a careful app does
//! (`clients/js`, `examples/python`): it keeps a window of unacknowledged sends, resends them
//! with the same `client_msg_id` after a reconnect, moves to the next node when its node is
//! gone, and joins with `since` = the last seq it saw (paging the REST history when the server
//! says it missed too much).
//!
//! Checked after each fault: every acknowledged message is stored once, with the seq its ack
//! gave; each conversation's seqs are gapless; every message every client sent was finally
//! acknowledged; and every client saw every seq of its conversation exactly once, in order.
//! The figures (acks, reconnects, duration) are printed; `docs/reliability.md` records them.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, token};
use confab_protocol::rest::Message as RestMessage;
use confab_protocol::{ClientFrame, Command, ServerFrame};
use confab_testkit::RedisServer;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Sends a client keeps unacknowledged at most.
const WINDOW: usize = 8;
/// How long a client may take in all.
const CLIENT_DEADLINE: Duration = Duration::from_secs(90);

/// One client's plan: who, where, what.
#[derive(Clone)]
struct Plan {
    user: &'static str,
    conversation: String,
    /// Every node's addresses (a restarted node listens on a new port).
    nodes: Nodes,
    /// Indexes into `nodes` to try, in order: its own node first.
    prefer: Vec<usize>,
    /// Messages to send.
    count: u64,
    /// Messages all clients of the conversation send: the client stays until it has seen them.
    total: u64,
    /// Pause between sends (zero: as fast as the window allows).
    pace: Duration,
}

/// `(WebSocket URL, REST base URL)` of each node, updated when one restarts.
#[derive(Clone)]
struct Nodes(Arc<Mutex<Vec<(String, String)>>>);

impl Nodes {
    fn of(servers: &[&Server]) -> Nodes {
        let addresses = servers.iter().map(|s| (s.ws_url(), s.base())).collect();
        Nodes(Arc::new(Mutex::new(addresses)))
    }

    fn get(&self, index: usize) -> (String, String) {
        self.0.lock().expect("nodes")[index].clone()
    }

    /// After node `index` restarted.
    fn update(&self, index: usize, server: &Server) {
        self.0.lock().expect("nodes")[index] = (server.ws_url(), server.base());
    }
}

/// What one client saw.
#[derive(Debug, Default)]
struct Report {
    /// client_msg_id → seq, from acks.
    acked: BTreeMap<String, u64>,
    /// Every seq of a `message` the client received (live, replayed or paged), in order.
    seen: Vec<u64>,
    /// Connections opened after the first.
    reconnects: u32,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, user: &str) -> Option<Socket> {
    let mut request = url.into_client_request().ok()?;
    let bearer = format!("Bearer {}", token(user)).parse().ok()?;
    request.headers_mut().insert("authorization", bearer);
    let connecting = tokio_tungstenite::connect_async(request);
    let (socket, _) = tokio::time::timeout(Duration::from_secs(3), connecting)
        .await
        .ok()?
        .ok()?;
    Some(socket)
}

async fn send(socket: &mut Socket, frame: ClientFrame) -> bool {
    let text = serde_json::to_string(&frame).expect("serialize");
    socket.send(Message::text(text)).await.is_ok()
}

/// The next server frame, `None` when the connection is gone (or silent for 5 s).
async fn next(socket: &mut Socket) -> Option<ServerFrame> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(&text).expect("a server frame"));
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
            _ => return None,
        }
    }
}

/// Messages with seq > `after` over REST (the gap a `join` could not replay).
async fn page_after(base: &str, user: &str, conversation: &str, after: u64) -> Vec<u64> {
    let client = reqwest::Client::new();
    let mut seqs = Vec::new();
    let mut after = after;
    loop {
        let url =
            format!("{base}/v1/conversations/{conversation}/messages?after={after}&limit=200");
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(token(user))
            .send()
            .await
            .expect("history request")
            .json()
            .await
            .expect("history json");
        let messages: Vec<RestMessage> =
            serde_json::from_value(page["messages"].clone()).expect("messages");
        let Some(last) = messages.last().map(|m| m.seq) else {
            return seqs;
        };
        seqs.extend(messages.iter().map(|m| m.seq));
        after = last;
    }
}

/// Runs one client until everything it sent is acknowledged.
async fn client(plan: Plan, acks: Arc<AtomicU64>) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    // client_msg_id → body, sent and not acknowledged yet.
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut next_message = 0u64;
    let mut last_seen = 0u64;
    let mut node = 0usize;
    let mut connections = 0u32;
    loop {
        assert!(
            started.elapsed() < CLIENT_DEADLINE,
            "{}: not done after {CLIENT_DEADLINE:?}: {} pending, {} of {} sent",
            plan.user,
            pending.len(),
            next_message,
            plan.count
        );
        let (url, base) = plan.nodes.get(plan.prefer[node]);
        let Some(mut socket) = connect(&url, plan.user).await else {
            // Its node is gone (or not back yet): the next one.
            node = (node + 1) % plan.prefer.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        connections += 1;
        report.reconnects = connections - 1;
        if connections > 1 {
            eprintln!(
                "{}: connection {connections} to node {node}, {} pending, last seen {last_seen}",
                plan.user,
                pending.len()
            );
        }
        if !matches!(next(&mut socket).await, Some(ServerFrame::Welcome { .. })) {
            continue;
        }
        let join = Command::Join {
            conversation: plan.conversation.clone(),
            // From the start the first time, so that the client sees every seq.
            since: Some(last_seen),
        };
        if !send(&mut socket, ClientFrame::with_ref("join", join)).await {
            continue;
        }
        // Until `joined`: replayed messages come after it, live ones may come before.
        let mut alive = true;
        loop {
            match next(&mut socket).await {
                Some(ServerFrame::Joined {
                    recovered,
                    last_seq,
                    ..
                }) => {
                    if !recovered {
                        for seq in page_after(&base, plan.user, &plan.conversation, last_seen).await
                        {
                            if seq > last_seen && seq <= last_seq {
                                report.seen.push(seq);
                                last_seen = seq;
                            }
                        }
                    }
                    break;
                }
                Some(ServerFrame::Message(message)) => {
                    assert_eq!(
                        message.seq,
                        last_seen + 1,
                        "{}: a gap or a repeat before joined",
                        plan.user
                    );
                    report.seen.push(message.seq);
                    last_seen = message.seq;
                }
                Some(_) => {}
                None => {
                    alive = false;
                    break;
                }
            }
        }
        if !alive {
            continue;
        }
        // Resend what was not acknowledged, with the same ids.
        for (id, body) in pending.clone() {
            let command = common::send_command(&plan.conversation, &id, &body);
            if !send(&mut socket, ClientFrame::new(command)).await {
                alive = false;
                break;
            }
        }
        let mut last_send = Instant::now();
        let mut last_frame = Instant::now();
        while alive {
            // Heard nothing for 5 s while waiting for acks: a dead connection (an app's
            // heartbeat would tell the same).
            if !pending.is_empty() && last_frame.elapsed() > Duration::from_secs(5) {
                eprintln!("{}: connection silent for 5 s; reconnecting", plan.user);
                break;
            }
            if next_message == plan.count && pending.is_empty() && last_seen == plan.total {
                let _ = socket.close(None).await;
                return report;
            }
            while pending.len() < WINDOW
                && next_message < plan.count
                && last_send.elapsed() >= plan.pace
            {
                let id = format!("{}-{next_message}", plan.user);
                let body = format!("{} says {next_message}", plan.user);
                next_message += 1;
                pending.insert(id.clone(), body.clone());
                last_send = Instant::now();
                let command = common::send_command(&plan.conversation, &id, &body);
                if !send(&mut socket, ClientFrame::new(command)).await {
                    alive = false;
                    break;
                }
            }
            if !alive {
                break;
            }
            let wait =
                if plan.pace.is_zero() || next_message == plan.count || pending.len() >= WINDOW {
                    Duration::from_secs(1)
                } else {
                    plan.pace.saturating_sub(last_send.elapsed())
                };
            let frame = match tokio::time::timeout(wait, next(&mut socket)).await {
                Err(_) => continue, // time for the next send
                Ok(None) => break,
                Ok(Some(frame)) => frame,
            };
            last_frame = Instant::now();
            match frame {
                ServerFrame::Ack {
                    client_msg_id, seq, ..
                } => {
                    if pending.remove(&client_msg_id).is_some() {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    let earlier = report.acked.insert(client_msg_id.clone(), seq);
                    assert!(
                        earlier.is_none_or(|earlier| earlier == seq),
                        "{client_msg_id} acked as seq {seq} after seq {earlier:?}"
                    );
                }
                ServerFrame::Message(message) => {
                    assert!(
                        message.seq > last_seen,
                        "{}: seq {} after {last_seen} (a repeat or out of order)",
                        plan.user,
                        message.seq
                    );
                    assert_eq!(
                        message.seq,
                        last_seen + 1,
                        "{}: a gap in the live stream",
                        plan.user
                    );
                    report.seen.push(message.seq);
                    last_seen = message.seq;
                }
                ServerFrame::Error { code, message, .. } => {
                    panic!("{}: error {code:?}: {message}", plan.user)
                }
                _ => {}
            }
        }
    }
}

/// Waits until the clients together have `count` acks.
async fn acks_reach(acks: &AtomicU64, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::Relaxed) < count {
        assert!(
            Instant::now() < deadline,
            "the load never reached {count} acks"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every page of a conversation's history.
async fn full_history(server: &Server, user: &str, conversation: &str) -> Vec<RestMessage> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = server
            .get(
                &format!("/v1/conversations/{conversation}/messages?after={after}&limit=200"),
                &token(user),
            )
            .await;
        assert_eq!(status, 200, "history: {page}");
        let messages: Vec<RestMessage> =
            serde_json::from_value(page["messages"].clone()).expect("messages");
        let Some(last) = messages.last().map(|m| m.seq) else {
            return all;
        };
        after = last;
        all.extend(messages);
    }
}

/// The checks after a fault; returns the number of acknowledged messages.
async fn check(server: &Server, plans: &[Plan], reports: &[Report]) -> usize {
    let mut acked_total = 0;
    let mut conversations: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, plan) in plans.iter().enumerate() {
        conversations.entry(&plan.conversation).or_default().push(i);
    }
    for (conversation, members) in conversations {
        let reader = plans[members[0]].user;
        let history = full_history(server, reader, conversation).await;
        let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
        let last = seqs.len() as u64;
        assert!(seqs.iter().copied().eq(1..=last), "gapless seqs");
        let stored: BTreeMap<&str, u64> = history
            .iter()
            .map(|m| (m.client_msg_id.as_str(), m.seq))
            .collect();
        assert_eq!(stored.len(), history.len(), "every client_msg_id once");
        let mut sent = 0;
        for &i in &members {
            let (plan, report) = (&plans[i], &reports[i]);
            sent += plan.count;
            assert_eq!(
                report.acked.len() as u64,
                plan.count,
                "{}: every send acknowledged",
                plan.user
            );
            for (id, seq) in &report.acked {
                assert_eq!(
                    stored.get(id.as_str()),
                    Some(seq),
                    "acked {id} stored with its seq"
                );
            }
            acked_total += report.acked.len();
            assert!(
                report.seen.iter().copied().eq(1..=last),
                "{}: every seq seen once, in order: {} seen, first wrong at {:?}",
                plan.user,
                report.seen.len(),
                report
                    .seen
                    .iter()
                    .zip(1..)
                    .position(|(&seen, want)| seen != want)
            );
        }
        assert_eq!(last, sent, "nothing stored that was not sent");
    }
    acked_total
}

/// Starts the clients of `plans`.
fn start(plans: &[Plan], acks: &Arc<AtomicU64>) -> Vec<tokio::task::JoinHandle<Report>> {
    plans
        .iter()
        .map(|plan| tokio::spawn(client(plan.clone(), acks.clone())))
        .collect()
}

async fn finish(clients: Vec<tokio::task::JoinHandle<Report>>) -> Vec<Report> {
    let mut reports = Vec::new();
    for client in clients {
        reports.push(client.await.expect("a client panicked"));
    }
    reports
}

fn plan(
    user: &'static str,
    conversation: &str,
    nodes: &Nodes,
    prefer: &[usize],
    count: u64,
) -> Plan {
    Plan {
        user,
        conversation: conversation.to_owned(),
        nodes: nodes.clone(),
        prefer: prefer.to_vec(),
        count,
        total: 0,
        pace: Duration::ZERO,
    }
}

/// Sets each plan's `total`: what all plans of its conversation send.
fn with_totals(mut plans: Vec<Plan>) -> Vec<Plan> {
    let totals: Vec<u64> = plans
        .iter()
        .map(|plan| {
            plans
                .iter()
                .filter(|other| other.conversation == plan.conversation)
                .map(|other| other.count)
                .sum()
        })
        .collect();
    for (plan, total) in plans.iter_mut().zip(totals) {
        plan.total = total;
    }
    plans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_a_sustained_send_load_loses_nothing_acknowledged() {
    const PER_CLIENT: u64 = 400;
    let started = Instant::now();
    let mut server = Server::start().await;
    let first = server.create_group("alice", &["bob"]).await;
    let second = server.create_group("carol", &["dave"]).await;
    let nodes = Nodes::of(&[&server]);
    let plans = with_totals(vec![
        plan("alice", &first, &nodes, &[0], PER_CLIENT),
        plan("bob", &first, &nodes, &[0], PER_CLIENT),
        plan("carol", &second, &nodes, &[0], PER_CLIENT),
        plan("dave", &second, &nodes, &[0], PER_CLIENT),
    ]);
    let acks = Arc::new(AtomicU64::new(0));
    let clients = start(&plans, &acks);
    acks_reach(&acks, 300).await;
    server.kill9();
    let at_kill = acks.load(Ordering::Relaxed);
    server.restart().await;
    nodes.update(0, &server);
    let reports = finish(clients).await;
    let acked = check(&server, &plans, &reports).await;
    let reconnects: u32 = reports.iter().map(|r| r.reconnects).sum();
    assert!(reconnects >= 4, "every client reconnected ({reconnects})");
    eprintln!(
        "kill -9 under load: {acked} acked and found once ({at_kill} before the kill), \
         {reconnects} reconnects, {:?}",
        started.elapsed()
    );
}

/// Two nodes sharing storage (one SQLite file) and Redis.
async fn two_nodes(redis: &RedisServer, data: &tempfile::TempDir) -> (Server, Server) {
    let data_dir = data.path().display().to_string();
    let url = redis.url();
    let flags = [
        "--data-dir",
        data_dir.as_str(),
        "--shared-data-dir",
        "true",
        "--hub",
        url.as_str(),
    ];
    let a = Server::start_with(&flags).await;
    let b = Server::start_with(&flags).await;
    (a, b)
}

async fn start_redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
        .expect("redis-server starts (run scripts/install-test-services)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_its_clients_move_and_lose_nothing() {
    const PER_CLIENT: u64 = 300;
    let started = Instant::now();
    let redis = start_redis().await;
    let data = tempfile::tempdir().expect("tempdir");
    let (mut a, b) = two_nodes(&redis, &data).await;
    let first = a.create_group("alice", &["bob"]).await;
    let second = a.create_group("carol", &["dave"]).await;
    // Each conversation has a member on each node.
    let nodes = Nodes::of(&[&a, &b]);
    let plans = with_totals(vec![
        plan("alice", &first, &nodes, &[0, 1], PER_CLIENT),
        plan("bob", &first, &nodes, &[1, 0], PER_CLIENT),
        plan("carol", &second, &nodes, &[0, 1], PER_CLIENT),
        plan("dave", &second, &nodes, &[1, 0], PER_CLIENT),
    ]);
    let acks = Arc::new(AtomicU64::new(0));
    let clients = start(&plans, &acks);
    acks_reach(&acks, 250).await;
    a.kill9();
    let at_kill = acks.load(Ordering::Relaxed);
    let reports = finish(clients).await;
    let acked = check(&b, &plans, &reports).await;
    let moved: u32 = reports.iter().step_by(2).map(|r| r.reconnects).sum();
    assert!(moved >= 2, "the clients of the killed node moved ({moved})");
    eprintln!(
        "node killed under load: {acked} acked and found once ({at_kill} before the kill), \
         {moved} reconnects of its clients, {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_for_10_s_under_load_loses_nothing() {
    const OUTAGE: Duration = Duration::from_secs(10);
    // ~40 messages/s per client for ~15 s.
    const PER_CLIENT: u64 = 600;
    const PACE: Duration = Duration::from_millis(25);
    let started = Instant::now();
    let redis = start_redis().await;
    let data = tempfile::tempdir().expect("tempdir");
    let (a, b) = two_nodes(&redis, &data).await;
    let conversation = a.create_group("alice", &["bob"]).await;
    let nodes = Nodes::of(&[&a, &b]);
    let mut plans = with_totals(vec![
        plan("alice", &conversation, &nodes, &[0, 1], PER_CLIENT),
        plan("bob", &conversation, &nodes, &[1, 0], PER_CLIENT),
    ]);
    for plan in &mut plans {
        plan.pace = PACE;
    }
    let acks = Arc::new(AtomicU64::new(0));
    let clients = start(&plans, &acks);
    acks_reach(&acks, 100).await;
    common::wait_for_subscribers(&redis.url(), &conversation, 2).await;
    tokio::task::block_in_place(|| redis.stop()).expect("stop redis");
    let stopped_at = acks.load(Ordering::Relaxed);
    tokio::time::sleep(OUTAGE).await;
    let during = acks.load(Ordering::Relaxed) - stopped_at;
    tokio::task::block_in_place(|| redis.restart()).expect("restart redis");
    let reports = finish(clients).await;
    let acked = check(&a, &plans, &reports).await;
    assert!(
        during > 100,
        "sending went on while Redis was down ({during} acks)"
    );
    let reconnects: u32 = reports.iter().map(|r| r.reconnects).sum();
    eprintln!(
        "redis stopped {OUTAGE:?} under load: {acked} acked and found once, {during} acked \
         during the outage, {reconnects} reconnects, {:?}",
        started.elapsed()
    );
}
