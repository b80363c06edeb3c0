//! Connections that hold the server without using it (slowloris): silent, trickling and idle
//! connections are closed on time, running out of descriptors or past the connection cap sheds
//! the oldest plain HTTP connection, and a normal client is served throughout.

mod common;

use std::time::{Duration, Instant};

use common::{Server, metric_value};
use confab_protocol::{Command, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// How a hostile connection behaves.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Connects and sends nothing.
    Silent,
    /// Sends a request head one byte at a time, never finishing it.
    TrickleHead,
    /// Completes one request, then keeps the connection open without another.
    IdleKeepAlive,
    /// Sends a complete head announcing a body, then the body a byte at a time, slower than
    /// the body-read timeout allows.
    TrickleBody,
}

/// What happened to one hostile connection.
#[derive(Debug)]
struct Outcome {
    attack: Attack,
    /// From connect (or from the end of the first response, for `IdleKeepAlive`) to close.
    closed_after: Option<Duration>,
    /// Everything the server sent after the attack began.
    answer: String,
}

const TRICKLE_HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Runs one hostile connection for at most `give_up`, reporting when the server closed it.
async fn attack(port: u16, attack: Attack, give_up: Duration) -> Outcome {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut started = Instant::now();
    let mut answer = Vec::new();
    let (to_send, interval): (Vec<u8>, Duration) = match attack {
        Attack::Silent => (Vec::new(), Duration::from_secs(3600)),
        Attack::TrickleHead => (TRICKLE_HEAD.to_vec(), Duration::from_millis(300)),
        Attack::IdleKeepAlive => {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .expect("request");
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.expect("response");
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&buf[..n])
            );
            started = Instant::now();
            (Vec::new(), Duration::from_secs(3600))
        }
        Attack::TrickleBody => {
            let head = format!(
                "POST /v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
                common::token("mallory")
            );
            stream.write_all(head.as_bytes()).await.expect("head");
            (vec![b' '; 1000], Duration::from_millis(1500))
        }
    };
    let mut next_byte = 0;
    let deadline = started + give_up;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(interval), if next_byte < to_send.len() => {
                if stream.write_all(&to_send[next_byte..=next_byte]).await.is_err() {
                    break;
                }
                next_byte += 1;
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                return Outcome { attack, closed_after: None, answer: String::from_utf8_lossy(&answer).into() };
            }
        }
    }
    Outcome {
        attack,
        closed_after: Some(started.elapsed()),
        answer: String::from_utf8_lossy(&answer).into(),
    }
}

/// A well-behaved client for `for_how_long`: `/health` on a fresh connection and a WebSocket
/// ping, every 100 ms; returns the slowest round trip.
async fn normal_client(server: &Server, for_how_long: Duration) -> Duration {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let mut ws = within("a WebSocket connect", server.ws("alice")).await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    while started.elapsed() < for_how_long {
        let round = Instant::now();
        let response = http
            .get(format!("{}/health", server.base()))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET /health failed during the attack: {err}"));
        assert_eq!(response.status().as_u16(), 200);
        assert!(matches!(
            within("a WebSocket ping", ws.request(Command::Ping)).await,
            ServerFrame::Pong { .. }
        ));
        slowest = slowest.max(round.elapsed());
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rounds > 10, "only {rounds} rounds");
    slowest
}

/// `future`'s output, or a failure naming `what` if it takes over 3 s (the server is not
/// serving: a hang would hide that).
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3), future)
        .await
        .unwrap_or_else(|_| panic!("{what} took over 3 s during the attack"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_trickling_and_idle_connections_are_closed_on_time() {
    let server = Server::start_with(&[
        "--header-read-timeout",
        "1s",
        "--body-read-timeout",
        "1s",
        "--keep-alive-timeout",
        "2s",
    ])
    .await;
    let mut attacks = JoinSet::new();
    let plan = [
        (Attack::Silent, 200),
        (Attack::TrickleHead, 100),
        (Attack::IdleKeepAlive, 100),
        (Attack::TrickleBody, 20),
    ];
    for (kind, count) in plan {
        for _ in 0..count {
            attacks.spawn(attack(server.port(), kind, Duration::from_secs(15)));
        }
    }
    let slowest = normal_client(&server, Duration::from_secs(6)).await;
    let outcomes = attacks.join_all().await;
    assert_eq!(outcomes.len(), 420);
    for outcome in &outcomes {
        let Some(closed_after) = outcome.closed_after else {
            panic!("never closed: {outcome:?}");
        };
        // Timeouts of 1 s (header, body) and 2 s (idle), with room for a loaded machine.
        let (at_least, at_most) = match outcome.attack {
            Attack::Silent | Attack::TrickleHead => {
                (Duration::from_millis(900), Duration::from_secs(5))
            }
            Attack::IdleKeepAlive => (Duration::from_millis(1900), Duration::from_secs(6)),
            Attack::TrickleBody => (Duration::from_millis(900), Duration::from_secs(6)),
        };
        assert!(
            closed_after >= at_least && closed_after <= at_most,
            "closed after {closed_after:?}, expected {at_least:?}..{at_most:?}: {outcome:?}"
        );
        match outcome.attack {
            Attack::TrickleBody => assert!(
                outcome.answer.starts_with("HTTP/1.1 408")
                    && outcome.answer.contains("\"timeout\""),
                "a stalled body is answered 408 timeout: {outcome:?}"
            ),
            _ => assert!(outcome.answer.is_empty(), "{outcome:?}"),
        }
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a normal client waited {slowest:?} during the attack"
    );
    let metrics = server.metrics().await;
    let timeouts = metric_value(&metrics, "confab_http_timeouts_total").unwrap_or(0.0);
    assert!(timeouts >= 420.0, "timeouts counted: {timeouts}\n{metrics}");
}

/// Opens `count` silent connections and keeps them.
async fn hold_silent(port: u16, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(
            within("a TCP connect", TcpStream::connect(("127.0.0.1", port)))
                .await
                .expect("connect"),
        );
    }
    held
}

/// How many of `held` the server has closed (a read sees the end at once).
async fn count_closed(held: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for stream in held.iter_mut() {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(5), stream.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_sheds_the_oldest_http_connections() {
    // Long timeouts: only shedding can make room.
    let server = Server::start_with(&[
        "--header-read-timeout",
        "60s",
        "--keep-alive-timeout",
        "60s",
    ])
    .await;
    // An authenticated WebSocket from before the flood is never shed.
    let mut ws = server.ws("alice").await;
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &server.pid().to_string(), "--nofile=200:200"])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed");

    let mut held = hold_silent(server.port(), 400).await;
    let slowest = normal_client(&server, Duration::from_secs(3)).await;
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    assert!(matches!(
        within("a WebSocket ping", ws.request(Command::Ping)).await,
        ServerFrame::Pong { .. }
    ));
    let closed = count_closed(&mut held).await;
    assert!(
        closed >= 200,
        "only {closed} of 400 silent connections shed"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("confab_connections_shed_total{reason=\"descriptors\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_the_oldest_http_connection_makes_room() {
    let server = Server::start_with(&[
        "--header-read-timeout",
        "60s",
        "--keep-alive-timeout",
        "60s",
        "--max-connections",
        "50",
    ])
    .await;
    let mut ws = server.ws("alice").await;
    let mut held = hold_silent(server.port(), 150).await;
    let slowest = normal_client(&server, Duration::from_secs(2)).await;
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    assert!(matches!(
        within("a WebSocket ping", ws.request(Command::Ping)).await,
        ServerFrame::Pong { .. }
    ));
    let closed = count_closed(&mut held).await;
    assert!(closed >= 100, "only {closed} of 150 shed at a cap of 50");
    let metrics = server.metrics().await;
    let shed = metric_value(&metrics, "confab_connections_shed_total").unwrap_or(0.0);
    assert!(shed >= 100.0, "{metrics}");
    let open = metric_value(&metrics, "confab_tcp_connections_open").unwrap_or(f64::MAX);
    assert!(open <= 51.0, "open connections {open} over the cap");
}
