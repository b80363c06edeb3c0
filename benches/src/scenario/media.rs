//! `media`: media files over HTTP, against what this host can move at all.
//!
//! In order, on one server: a `--rss-mib` single upload first, with the server's RSS sampled
//! every 50 ms (a streamed upload should hold a few buffers, not the file; first, because glibc
//! keeps what a process once held); a raw copy of `--file-mib` over loopback TCP (no HTTP, no
//! hashing, no disk: the bound every transfer is compared with); the same bytes in one
//! multipart `POST /v1/media` and through the resumable API (`--upload-concurrency` chunks in
//! flight); a download of the file; then `--concurrent` single uploads started at once. The
//! files are deleted at the end.
//!
//! Every byte sent comes from [`Pattern`], made as it is sent, 64 KiB at a time: the generator
//! never holds a file. The server must accept files of `--file-mib` (`--media-max-file-bytes`,
//! 100 MiB by default): the scenario asks first, and says which flag to raise.

mod client;
mod pattern;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::cli::MediaArgs;
use crate::probe::{self, Probe};
use crate::report::{
    ChunkedReport, ConcurrentReport, MediaReport, PhaseServerReport, RawCopyReport, Report,
    TransferReport,
};
use crate::stats::{Percentiles, new_histogram, record};

use super::{Env, Snapshot, cpu_between, process_reports};
use client::MediaClient;
use pattern::BLOCK;
pub use pattern::Pattern;

const MIB: u64 = 1024 * 1024;
/// How often the server's RSS is sampled during a phase.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// MB (10^6 bytes) per second.
fn mb_per_sec(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / secs / 1e6
    } else {
        0.0
    }
}

/// What one phase cost: its wall time, the server's CPU time and peak RSS, the generator's CPU.
struct Phase {
    secs: f64,
    server: PhaseServerReport,
    client_cpu: Option<f64>,
}

impl Phase {
    fn transfer(&self, bytes: u64, raw: &RawCopyReport) -> TransferReport {
        let rate = mb_per_sec(bytes, self.secs);
        TransferReport {
            bytes,
            secs: self.secs,
            mb_per_sec: rate,
            ratio_to_raw: if raw.mb_per_sec > 0.0 {
                rate / raw.mb_per_sec
            } else {
                0.0
            },
            server: self.server.clone(),
            client_cpu_seconds: self.client_cpu,
        }
    }
}

/// Runs `work` while sampling the server's RSS every 50 ms.
async fn watch<F: Future>(probe: &Probe, work: F) -> (F::Output, Phase) {
    let before = probe.sample().await;
    let client_before = probe::own();
    let started = Instant::now();
    let mut peak = before.map(|s| s.resident_bytes);
    let mut samples = 0u32;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut work = std::pin::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = tick.tick() => {
                if let Some(sample) = probe.sample().await {
                    peak = peak.max(Some(sample.resident_bytes));
                    samples += 1;
                }
            }
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let after = probe.sample().await;
    peak = peak.max(after.map(|s| s.resident_bytes));
    let rss_before = before.map(|s| s.resident_bytes);
    let server = PhaseServerReport {
        cpu_seconds: cpu_between(before, after),
        rss_before_bytes: rss_before,
        rss_max_bytes: peak,
        rss_growth_bytes: rss_before.zip(peak).map(|(b, p)| p as i64 - b as i64),
        rss_samples: samples + u32::from(after.is_some()),
    };
    let phase = Phase {
        secs,
        server,
        client_cpu: cpu_between(client_before, probe::own()),
    };
    (out, phase)
}

/// Writes `bytes` of the pattern over one loopback TCP connection in 64 KiB writes; the other
/// end reads and discards them. Timed from connecting to the reader's end of stream.
async fn raw_copy(pattern: &Pattern, bytes: u64) -> anyhow::Result<RawCopyReport> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut buf = vec![0u8; BLOCK];
        let mut total = 0u64;
        loop {
            match socket.read(&mut buf).await? {
                0 => return anyhow::Ok(total),
                n => total += n as u64,
            }
        }
    });
    let started = Instant::now();
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let mut buf = vec![0u8; BLOCK];
    let mut pos = 0u64;
    while pos < bytes {
        let len = (bytes - pos).min(BLOCK as u64) as usize;
        pattern.fill(pos, &mut buf[..len]);
        socket.write_all(&buf[..len]).await?;
        pos += len as u64;
    }
    socket.shutdown().await?;
    let read = reader.await??;
    let secs = started.elapsed().as_secs_f64();
    if read != bytes {
        bail!("the raw copy read {read} of {bytes} bytes");
    }
    Ok(RawCopyReport {
        bytes,
        write_bytes: BLOCK,
        secs,
        mb_per_sec: mb_per_sec(bytes, secs),
    })
}

/// The large file's phases: single and chunked upload, download, checksums.
struct LargeFile {
    single: TransferReport,
    chunked: ChunkedReport,
    download: TransferReport,
    sha256: String,
    /// The files made (to delete at the end).
    ids: Vec<String>,
}

async fn large_file(
    env: &Env,
    client: &MediaClient,
    token: &str,
    args: &MediaArgs,
    raw: &RawCopyReport,
) -> anyhow::Result<LargeFile> {
    let size = args.file_mib * MIB;
    eprintln!("media: single upload of {} MiB", args.file_mib);
    let (single, single_phase) = watch(&env.probe, client.single(token, size, "single.bin")).await;
    let single = single.context("the single upload")?;
    eprintln!(
        "media: stored as {} ({}); chunked upload, {} chunks in flight",
        single.id, single.content_type, args.upload_concurrency
    );
    let upload = client.chunked(token, size, "chunked.bin", args.upload_concurrency);
    let (chunked, chunked_phase) = watch(&env.probe, upload).await;
    let chunked = chunked.context("the chunked upload")?;
    eprintln!("media: download");
    let reading = client.download(token, &single.id, args.verify_sha256);
    let (downloaded, download_phase) = watch(&env.probe, reading).await;
    let (read, read_sha256) = downloaded.context("the download")?;
    if read != size {
        bail!("downloaded {read} of {size} bytes");
    }
    if chunked.info.sha256 != single.sha256 {
        bail!(
            "the same bytes got two SHA-256s: {} (single), {} (chunked)",
            single.sha256,
            chunked.info.sha256
        );
    }
    if args.verify_sha256 {
        let pattern = client.pattern.clone();
        let expected = tokio::task::spawn_blocking(move || pattern.sha256(size)).await?;
        if single.sha256 != expected || read_sha256.as_deref() != Some(expected.as_str()) {
            bail!(
                "SHA-256: generated {expected}, stored {}, downloaded {read_sha256:?}",
                single.sha256
            );
        }
    }
    Ok(LargeFile {
        single: single_phase.transfer(size, raw),
        chunked: ChunkedReport {
            transfer: chunked_phase.transfer(size, raw),
            chunk_size: chunked.chunk_size,
            chunks: chunked.chunks,
            concurrency: args.upload_concurrency.max(1),
            complete_secs: chunked.complete_secs,
        },
        download: download_phase.transfer(read, raw),
        sha256: single.sha256,
        ids: vec![single.id, chunked.info.id],
    })
}

/// `--concurrent` single uploads of `--concurrent-mib` each, each by its own user, all started
/// at once. Returns the report and the files made (token, id).
async fn concurrent(
    env: &Env,
    client: &Arc<MediaClient>,
    args: &MediaArgs,
) -> anyhow::Result<(ConcurrentReport, Vec<(String, String)>)> {
    let tokens = env.tokens(args.concurrent)?;
    let size = args.concurrent_mib * MIB;
    eprintln!(
        "media: {} concurrent uploads of {} MiB",
        args.concurrent, args.concurrent_mib
    );
    let uploads = async {
        let mut tasks = JoinSet::new();
        for (i, token) in tokens.iter().enumerate() {
            let (client, token) = (client.clone(), token.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                let result = client
                    .single(&token, size, &format!("concurrent-{i}.bin"))
                    .await;
                (token, started.elapsed(), result)
            });
        }
        tasks.join_all().await
    };
    let (results, phase) = watch(&env.probe, uploads).await;
    let mut report = ConcurrentReport {
        uploads: args.concurrent,
        bytes_each: size,
        secs: phase.secs,
        server: phase.server,
        ..ConcurrentReport::default()
    };
    let mut histogram = new_histogram();
    let mut made = Vec::new();
    for (token, elapsed, result) in results {
        match result {
            Ok(info) => {
                record(&mut histogram, elapsed);
                report.ok += 1;
                report.bytes_stored += info.size;
                made.push((token, info.id));
            }
            Err(err) => {
                report.failures += 1;
                if report.error_samples.len() < 5 {
                    report.error_samples.push(format!("{err:#}"));
                }
            }
        }
    }
    report.uploads_per_sec = if report.secs > 0.0 {
        report.ok as f64 / report.secs
    } else {
        0.0
    };
    report.mb_per_sec = mb_per_sec(report.bytes_stored, report.secs);
    report.latency = Percentiles::of(&histogram);
    Ok((report, made))
}

/// Deletes the files the run made (a 1 GiB run leaves 2 GiB otherwise).
async fn delete_all(client: &MediaClient, files: &[(String, String)]) {
    let failed = stream::iter(files)
        .map(|(token, id)| client.delete(token, id))
        .buffer_unordered(8)
        .filter_map(|result| async move { result.err() })
        .collect::<Vec<_>>()
        .await;
    if let Some(err) = failed.first() {
        eprintln!(
            "media: {} of {} files not deleted: {err:#}",
            failed.len(),
            files.len()
        );
    }
}

pub async fn run(env: &Env, args: MediaArgs) -> anyhow::Result<Report> {
    let client = Arc::new(MediaClient::new(&env.common.url)?);
    let token = env.ids.token(0)?;
    let size = args.file_mib * MIB;
    let rss_size = args.rss_mib * MIB;
    client.check_limit(&token, size.max(rss_size)).await?;
    let before = env.probe.sample().await;
    let start = Snapshot::take(&env.probe, None).await;

    eprintln!(
        "media: {} MiB upload, the server's rss sampled every {} ms",
        args.rss_mib,
        SAMPLE_EVERY.as_millis()
    );
    let (rss_file, rss_phase) = watch(&env.probe, client.single(&token, rss_size, "rss.bin")).await;
    let rss_file = rss_file.context("the rss upload")?;
    eprintln!("media: raw loopback copy of {} MiB", args.file_mib);
    let raw = raw_copy(&client.pattern, size).await?;
    let large = large_file(env, &client, &token, &args, &raw).await?;
    let (concurrent, made) = concurrent(env, &client, &args).await?;

    let stop = Snapshot::take(&env.probe, None).await;
    let end = env.probe.sample().await;
    let mut files: Vec<(String, String)> = large
        .ids
        .iter()
        .chain([&rss_file.id])
        .map(|id| (token.clone(), id.clone()))
        .collect();
    files.extend(made);
    delete_all(&client, &files).await;

    let media = MediaReport {
        file_bytes: size,
        rss_upload: rss_phase.transfer(rss_file.size, &raw),
        raw_copy: raw,
        single: large.single,
        chunked: large.chunked,
        download: large.download,
        sha256: large.sha256,
        sha256_verified: args.verify_sha256,
        concurrent,
    };
    let (server, client_report) =
        process_reports(&env.probe, before, None, end, 0, (&start, &stop));
    Ok(Report {
        scenario: "media",
        params: serde_json::to_value(&args)?,
        connections: None,
        traffic: None,
        server,
        client: client_report,
        churn: None,
        history: None,
        cluster: None,
        media: Some(media),
        flood: None,
        topologies: None,
    })
}
