//! Media files over real HTTP: single and resumable uploads, byte-exact downloads and ranges,
//! access rules, checksums, limits, hostile names, expiry and restarts.

mod common;

use common::{Server, TENANT, assert_rest_error, token, token_in};
use confab_protocol::ErrorCode;
use confab_storage::media::sha256_hex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

/// `len` bytes that differ from position to position.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ ((i >> 11) as u8).wrapping_add(seed))
        .collect()
}

/// A download: status, headers and bytes.
async fn fetch(
    server: &Server,
    user: &str,
    id: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = server
        .client()
        .get(format!("{}/v1/media/{id}", server.base()))
        .bearer_auth(token(user));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("GET media");
    let (status, headers) = (response.status(), response.headers().clone());
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// Sends every chunk of `data` (but `skip`) to upload `id` of `chunk` bytes each.
async fn put_chunks(
    server: &Server,
    user: &str,
    id: &str,
    data: &[u8],
    chunk: usize,
    skip: &[usize],
) {
    for (n, piece) in data.chunks(chunk).enumerate() {
        if skip.contains(&n) {
            continue;
        }
        put_chunk(server, user, id, n, piece, Some(&sha256_hex(piece))).await;
    }
}

async fn put_chunk(
    server: &Server,
    user: &str,
    id: &str,
    n: usize,
    piece: &[u8],
    sha: Option<&str>,
) -> u16 {
    let mut request = server
        .client()
        .put(format!(
            "{}/v1/media/uploads/{id}/chunks/{n}",
            server.base()
        ))
        .bearer_auth(token(user))
        .body(piece.to_vec());
    if let Some(sha) = sha {
        request = request.header("x-chunk-sha256", sha);
    }
    let status = request.send().await.expect("PUT chunk").status().as_u16();
    assert!(
        status == 204 || sha.is_some_and(|s| s.len() != 64) || status >= 400,
        "{status}"
    );
    status
}

async fn start_upload(server: &Server, user: &str, body: Value) -> Value {
    let (status, created) = server.post("/v1/media/uploads", &token(user), body).await;
    assert_eq!(status, 201, "{created}");
    created
}

fn id_of(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value}"))
        .to_owned()
}

#[tokio::test]
async fn files_round_trip_byte_for_byte() {
    let server = Server::in_process(&[]).await;
    for len in [0, 1, 70_000] {
        let data = pattern(len, 1);
        let file = server.upload("alice", "data.bin", &data).await;
        assert_eq!(file["size"], json!(len));
        assert_eq!(file["sha256"], json!(sha256_hex(&data)));
        assert_eq!(file["uploader"], json!("alice"));
        let (status, headers, body) = fetch(&server, "alice", &id_of(&file, "id"), &[]).await;
        assert_eq!(status, 200);
        assert!(body == data, "{len} bytes differ");
        assert_eq!(header(&headers, "content-length"), len.to_string());
        assert_eq!(header(&headers, "accept-ranges"), "bytes");
        assert_eq!(
            header(&headers, "etag"),
            format!("\"{}\"", sha256_hex(&data))
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert!(!header(&headers, "last-modified").is_empty());
        assert!(header(&headers, "cache-control").contains("private"));
    }
}

#[tokio::test]
async fn a_25_mib_file_goes_up_in_chunks_and_resumes_after_a_skipped_one() {
    let server = Server::in_process(&[]).await;
    let data = pattern(25 * MIB + 12_345, 2);
    let created = start_upload(
        &server,
        "alice",
        json!({"name": "movie.mp4", "size": data.len(), "sha256": sha256_hex(&data)}),
    )
    .await;
    let (id, chunk) = (id_of(&created, "upload_id"), 5 * MIB);
    assert_eq!(created["chunk_size"], json!(chunk));
    assert_eq!(created["chunk_count"], json!(6));
    put_chunks(&server, "alice", &id, &data, chunk, &[3]).await;
    // The connection dropped before chunk 3: the client asks how far it got.
    let (status, progress) = server
        .get(&format!("/v1/media/uploads/{id}"), &token("alice"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(progress["missing_chunks"], json!([3]));
    assert_eq!(progress["received_bytes"], json!(data.len() - chunk));
    let early = server
        .post(
            &format!("/v1/media/uploads/{id}/complete"),
            &token("alice"),
            json!({}),
        )
        .await;
    assert_rest_error(&early, 409, ErrorCode::Conflict);
    // Another user cannot see or touch the upload.
    let (status, _) = server
        .get(&format!("/v1/media/uploads/{id}"), &token("bob"))
        .await;
    assert_eq!(status, 404);
    let piece = &data[3 * chunk..4 * chunk];
    assert_eq!(put_chunk(&server, "alice", &id, 3, piece, None).await, 204);
    let (status, file) = server
        .post(
            &format!("/v1/media/uploads/{id}/complete"),
            &token("alice"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(file["sha256"], json!(sha256_hex(&data)));
    let (status, _, body) = fetch(&server, "alice", &id_of(&file, "id"), &[]).await;
    assert_eq!(status, 200);
    assert!(body == data, "the 25 MiB file differs");
    let (status, _) = server
        .get(&format!("/v1/media/uploads/{id}"), &token("alice"))
        .await;
    assert_eq!(status, 404, "a completed upload is gone");
}

#[tokio::test]
async fn checksum_mismatches_are_refused_and_nothing_is_stored() {
    let server = Server::in_process(&[]).await;
    let data = pattern(6 * MIB, 3);
    let created = start_upload(
        &server,
        "alice",
        json!({"name": "a.bin", "size": data.len(), "sha256": sha256_hex(b"not these bytes")}),
    )
    .await;
    let id = id_of(&created, "upload_id");
    let first = &data[..5 * MIB];
    let status = put_chunk(&server, "alice", &id, 0, first, Some(&sha256_hex(b"other"))).await;
    assert_eq!(status, 422, "a chunk that does not match its header");
    let (_, progress) = server
        .get(&format!("/v1/media/uploads/{id}"), &token("alice"))
        .await;
    assert_eq!(progress["missing_chunks"], json!([0, 1]));
    put_chunks(&server, "alice", &id, &data, 5 * MIB, &[]).await;
    let refused = server
        .post(
            &format!("/v1/media/uploads/{id}/complete"),
            &token("alice"),
            json!({}),
        )
        .await;
    assert_rest_error(&refused, 422, ErrorCode::ChecksumMismatch);
    let (status, _) = server
        .get(&format!("/v1/media/uploads/{id}"), &token("alice"))
        .await;
    assert_eq!(status, 404, "the refused upload is removed");
}

#[tokio::test]
async fn ranges_are_exact_and_a_bad_one_is_416() {
    let server = Server::in_process(&[]).await;
    let data = pattern(10_000, 4);
    let file = server.upload("alice", "clip.bin", &data).await;
    let id = id_of(&file, "id");
    for (range, start, end) in [
        ("bytes=10-19", 10, 20),
        ("bytes=9990-", 9990, 10_000),
        ("bytes=-5", 9995, 10_000),
        ("bytes=9000-99999", 9000, 10_000),
    ] {
        let (status, headers, body) = fetch(&server, "alice", &id, &[("range", range)]).await;
        assert_eq!(status, 206, "{range}");
        assert!(body == data[start..end], "{range}: bytes differ");
        assert_eq!(
            header(&headers, "content-range"),
            format!("bytes {start}-{}/10000", end - 1)
        );
        assert_eq!(
            header(&headers, "content-length"),
            (end - start).to_string()
        );
    }
    let (status, headers, _) = fetch(&server, "alice", &id, &[("range", "bytes=10000-")]).await;
    assert_eq!(status, 416);
    assert_eq!(header(&headers, "content-range"), "bytes */10000");
    let (status, _, body) = fetch(&server, "alice", &id, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(
        (status.as_u16(), body.len()),
        (200, 10_000),
        "several ranges: the whole file"
    );
    let etag = format!("\"{}\"", sha256_hex(&data));
    let (status, _, body) = fetch(&server, "alice", &id, &[("if-none-match", &etag)]).await;
    assert_eq!((status.as_u16(), body.len()), (304, 0));
    let head = server
        .client()
        .head(format!("{}/v1/media/{id}", server.base()))
        .bearer_auth(token("alice"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(header(head.headers(), "content-length"), "10000");
    let (_, meta) = server
        .get(&format!("/v1/media/{id}/meta"), &token("alice"))
        .await;
    assert_eq!(
        meta["downloads"],
        json!(1),
        "GETs from byte 0 (not ranges, HEAD or 304): {meta}"
    );
}

#[tokio::test]
async fn members_see_a_conversations_file_others_get_404() {
    let server = Server::in_process(&[]).await;
    let conversation = server.create_group("alice", &["bob", "carol"]).await;
    let answer = server
        .upload_as(&token("bob"), "cat.bin", b"meow", Some(&conversation))
        .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    let id = id_of(&answer.1, "id");
    assert_eq!(answer.1["conversations"], json!([conversation]));
    assert_eq!(fetch(&server, "carol", &id, &[]).await.0, 200);
    assert_eq!(fetch(&server, "eve", &id, &[]).await.0, 404, "a non-member");
    let other_tenant = server
        .client()
        .get(format!("{}/v1/media/{id}", server.base()))
        .bearer_auth(token_in("bob", "other-tenant"))
        .send()
        .await
        .expect("GET");
    assert_eq!(other_tenant.status(), 404, "another tenant");
    let outsider = server
        .upload_as(&token("eve"), "x.bin", b"x", Some(&conversation))
        .await;
    assert_rest_error(&outsider, 403, ErrorCode::NotMember);
    // A removed member loses the file.
    let (status, _) = server
        .delete(
            &format!("/v1/conversations/{conversation}/members/carol"),
            &token("alice"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fetch(&server, "carol", &id, &[]).await.0, 404);
    // An unattached file is its uploader's alone.
    let own = server.upload("alice", "own.bin", b"mine").await;
    assert_eq!(fetch(&server, "bob", &id_of(&own, "id"), &[]).await.0, 404);
    // Delete: a member may not, the owner may; then it is gone for everyone.
    let (status, _) = server
        .post(
            &format!("/v1/conversations/{conversation}/members"),
            &token("alice"),
            json!({"user": "dave"}),
        )
        .await;
    assert_eq!(status, 201);
    let denied = server
        .delete(&format!("/v1/media/{id}"), &token("dave"))
        .await;
    assert_rest_error(&denied, 403, ErrorCode::Forbidden);
    let (status, _) = server
        .delete(&format!("/v1/media/{id}"), &token("alice"))
        .await;
    assert_eq!(status, 204);
    assert_eq!(fetch(&server, "bob", &id, &[]).await.0, 404);
}

#[tokio::test]
async fn limits_types_names_and_quota_are_enforced() {
    let server = Server::in_process(&[
        "--media-max-file-bytes",
        "1000",
        "--media-quota-bytes",
        "1500",
    ])
    .await;
    let too_big = server
        .upload_as(&token("alice"), "big.bin", &pattern(1001, 5), None)
        .await;
    assert_rest_error(&too_big, 413, ErrorCode::TooLarge);
    let announced = server
        .post(
            "/v1/media/uploads",
            &token("alice"),
            json!({"name": "b", "size": 1001}),
        )
        .await;
    assert_rest_error(&announced, 413, ErrorCode::TooLarge);
    let elf = [b"\x7fELF\x02\x01\x01\x00".as_slice(), &[0u8; 56]].concat();
    let program = server
        .upload_as(&token("alice"), "cute-cat.png", &elf, None)
        .await;
    assert_rest_error(&program, 415, ErrorCode::UnsupportedMediaType);
    let hostile = server
        .upload("alice", "../../etc/passwd\u{202e}gpj.exe", b"hello")
        .await;
    let name = hostile["name"].as_str().unwrap_or_default();
    assert!(
        !name.contains('/') && !name.contains('\u{202e}') && !name.starts_with('.'),
        "{name}"
    );
    assert_eq!(
        hostile["content_type"],
        json!("text/plain; charset=utf-8"),
        "sniffed, not from the name"
    );
    let (_, headers, _) = fetch(&server, "alice", &id_of(&hostile, "id"), &[]).await;
    let disposition = header(&headers, "content-disposition");
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(!disposition.contains('/'), "{disposition}");
    server.upload("alice", "a.bin", &pattern(900, 6)).await;
    let over = server
        .upload_as(&token("bob"), "b.bin", &pattern(900, 7), None)
        .await;
    assert_rest_error(&over, 507, ErrorCode::QuotaExceeded);
    let no_token = server
        .request_raw(Method::POST, "/v1/media", None, None, vec![])
        .await;
    assert_rest_error(&no_token, 401, ErrorCode::Unauthorized);
    let metrics = server
        .get(
            &format!("/v1/media/{}/meta", "0".repeat(32)),
            &token("alice"),
        )
        .await;
    assert_rest_error(&metrics, 404, ErrorCode::NotFound);
    let _ = TENANT;
}

#[tokio::test]
async fn an_upload_survives_a_restart_and_an_idle_one_expires() {
    let mut server = Server::start_with(&["--media-upload-expiry", "6s"]).await;
    let data = pattern(6 * MIB, 8);
    let created = start_upload(
        &server,
        "alice",
        json!({"name": "a.bin", "size": data.len()}),
    )
    .await;
    let id = id_of(&created, "upload_id");
    put_chunks(&server, "alice", &id, &data, 5 * MIB, &[1]).await;
    server.kill9();
    server.restart().await;
    let (status, progress) = server
        .get(&format!("/v1/media/uploads/{id}"), &token("alice"))
        .await;
    assert_eq!(
        status, 200,
        "the upload is still there after a restart: {progress}"
    );
    put_chunks(&server, "alice", &id, &data, 5 * MIB, &[0]).await;
    let (status, file) = server
        .post(
            &format!("/v1/media/uploads/{id}/complete"),
            &token("alice"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(
        fetch(&server, "alice", &id_of(&file, "id"), &[]).await.2,
        data
    );

    let idle = start_upload(&server, "alice", json!({"name": "idle.bin", "size": 10})).await;
    let idle = id_of(&idle, "upload_id");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, _) = server
            .get(&format!("/v1/media/uploads/{idle}"), &token("alice"))
            .await;
        if status == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle upload never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // Counted once the sweep that removed it is over (a moment after the 404).
    loop {
        let metrics = server.metrics().await;
        if common::metric_value(&metrics, "confab_media_uploads_expired_total").unwrap_or(0.0)
            >= 1.0
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// An image of `width` × `height` in `format`, as a client would upload it.
fn image_bytes(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, format)
        .expect("encode");
    out.into_inner()
}

/// CRC-32 (IEEE) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real 1×1 PNG whose header claims 60000 × 60000 pixels (14 GB decoded).
fn png_bomb() -> Vec<u8> {
    let mut png = image_bytes(1, 1, image::ImageFormat::Png);
    // Signature (8), then IHDR: length (4), "IHDR" (4), width (4), height (4), … CRC.
    png[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

async fn thumbnail_of(server: &Server, id: &str) -> (StatusCode, String, Vec<u8>) {
    let response = server
        .client()
        .get(format!("{}/v1/media/{id}/thumbnail", server.base()))
        .bearer_auth(token("alice"))
        .send()
        .await
        .expect("GET thumbnail");
    let status = response.status();
    let kind = header(response.headers(), "content-type").to_owned();
    (status, kind, response.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn images_get_thumbnails_of_the_expected_size_and_a_bomb_is_refused() {
    let server = Server::in_process(&[]).await;
    for (format, width, height, expected) in [
        (image::ImageFormat::Png, 640, 480, (320, 240)),
        (image::ImageFormat::Jpeg, 400, 800, (160, 320)),
        (image::ImageFormat::Png, 100, 50, (100, 50)),
    ] {
        let file = server
            .upload("alice", "picture", &image_bytes(width, height, format))
            .await;
        assert_eq!(file["content_type"], json!(format.to_mime_type()));
        let (status, kind, bytes) = thumbnail_of(&server, &id_of(&file, "id")).await;
        assert_eq!(status, 200, "{format:?}");
        assert_eq!(kind, "image/jpeg", "no transparency: JPEG");
        let thumb = image::load_from_memory(&bytes).expect("a decodable thumbnail");
        assert_eq!(
            (thumb.width(), thumb.height()),
            expected,
            "{format:?} {width}×{height}"
        );
    }
    let bomb = server.upload("alice", "bomb.png", &png_bomb()).await;
    let (status, _, body) = thumbnail_of(&server, &id_of(&bomb, "id")).await;
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    let text = server.upload("alice", "notes.txt", b"just words").await;
    // The file exists; its type has no thumbnail.
    assert_eq!(thumbnail_of(&server, &id_of(&text, "id")).await.0, 415);
}

/// GET of a path with no token: status and body.
async fn get_anonymous(server: &Server, path: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = server.client().get(format!("{}{path}", server.base()));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn a_signed_link_works_without_a_token_until_changed_expired_or_deleted() {
    let server = Server::in_process(&["--media-signed-url-max-ttl", "1h"]).await;
    let data = pattern(5000, 9);
    let file = server.upload("alice", "song.mp3", &data).await;
    let id = id_of(&file, "id");
    let (status, link) = server
        .post(
            &format!("/v1/media/{id}/signed"),
            &token("alice"),
            json!({"ttl": 600}),
        )
        .await;
    assert_eq!(status, 200, "{link}");
    let url = link["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&format!("/v1/signed/media/{id}?")), "{url}");
    let (status, body) = get_anonymous(&server, &url, None).await;
    assert_eq!(status, 200);
    assert!(body == data, "the linked bytes differ");
    let (status, body) = get_anonymous(&server, &url, Some("bytes=100-199")).await;
    assert_eq!(
        (status, body.as_slice()),
        (206, &data[100..200]),
        "players seek through links too"
    );

    // Changed: the signature, the expiry, the tenant, the file.
    let tampered = [
        url.replace("sig=", "sig=00"),
        url.replace("expires=", "expires=9"),
        url.replace("tenant=acme", "tenant=other"),
        url.replace(&id, &"0".repeat(32)),
    ];
    for changed in &tampered {
        assert_eq!(
            get_anonymous(&server, changed, None).await.0,
            403,
            "{changed}"
        );
    }
    // Too long a lifetime, and someone who cannot see the file, get no link.
    let too_long = server
        .post(
            &format!("/v1/media/{id}/signed"),
            &token("alice"),
            json!({"ttl": 3601}),
        )
        .await;
    assert_rest_error(&too_long, 400, ErrorCode::Invalid);
    let (status, _) = server
        .post(&format!("/v1/media/{id}/signed"), &token("bob"), json!({}))
        .await;
    assert_eq!(status, 404);
    // Expired.
    let (_, short) = server
        .post(
            &format!("/v1/media/{id}/signed"),
            &token("alice"),
            json!({"ttl": 1}),
        )
        .await;
    let short = short["url"].as_str().expect("url").to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = get_anonymous(&server, &short, None).await;
    assert_eq!(expired.0, 403, "{}", String::from_utf8_lossy(&expired.1));
    // Deleted.
    let (status, _) = server
        .delete(&format!("/v1/media/{id}"), &token("alice"))
        .await;
    assert_eq!(status, 204);
    assert_eq!(get_anonymous(&server, &url, None).await.0, 404);
}

/// Two nodes sharing one store and one S3 bucket (SeaweedFS): a file uploaded through one
/// downloads through the other, and a resumable upload started on one completes on the other.
#[cfg(feature = "s3")]
#[tokio::test]
async fn with_two_nodes_on_s3_a_file_uploaded_through_one_downloads_through_the_other() {
    use confab_testkit::{RedisServer, S3Server};

    let s3 = tokio::task::spawn_blocking(S3Server::start)
        .await
        .expect("join")
        .expect("start SeaweedFS");
    // The two nodes share one SQLite file: a cluster hub and the explicit opt-in.
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
        .expect("start redis-server");
    let hub = redis.url();
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().display().to_string();
    let media = format!(
        "s3://{}?endpoint={}&region={}",
        S3Server::BUCKET,
        s3.url(),
        S3Server::REGION
    );
    let flags = [
        "--data-dir",
        data_dir.as_str(),
        "--shared-data-dir",
        "true",
        "--hub",
        hub.as_str(),
        "--media",
        media.as_str(),
    ];
    let keys = [
        ("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", S3Server::SECRET_KEY),
    ];
    let a = Server::start_with_env(&flags, &keys).await;
    let b = Server::start_with_env(&flags, &keys).await;

    let bytes = pattern(300_000, 10);
    let file = a.upload("alice", "report.pdf", &bytes).await;
    let id = id_of(&file, "id");
    let (status, headers, body) = fetch(&b, "alice", &id, &[("range", "bytes=1000-")]).await;
    assert_eq!(status, 206);
    assert!(body == bytes[1000..], "node B serves node A's upload");
    assert_eq!(
        header(&headers, "content-range"),
        "bytes 1000-299999/300000"
    );

    let big = pattern(5 * MIB + 77, 11);
    let created = start_upload(
        &a,
        "alice",
        json!({"name": "big.bin", "size": big.len(), "sha256": sha256_hex(&big)}),
    )
    .await;
    let upload = id_of(&created, "upload_id");
    put_chunks(&a, "alice", &upload, &big, 5 * MIB, &[1]).await;
    put_chunks(&b, "alice", &upload, &big, 5 * MIB, &[0]).await;
    let (status, done) = b
        .post(
            &format!("/v1/media/uploads/{upload}/complete"),
            &token("alice"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{done}");
    assert!(
        fetch(&a, "alice", &id_of(&done, "id"), &[]).await.2 == big,
        "the chunked file differs"
    );
}

#[tokio::test]
async fn uploads_per_user_are_rate_limited() {
    let server = Server::in_process(&["--media-uploads-per-minute", "2"]).await;
    server.upload("alice", "1.txt", b"one").await;
    server.upload("alice", "2.txt", b"two").await;
    let third = server
        .upload_as(&token("alice"), "3.txt", b"three", None)
        .await;
    assert_rest_error(&third, 429, ErrorCode::RateLimited);
    let resumable = server
        .post(
            "/v1/media/uploads",
            &token("alice"),
            json!({"name": "4", "size": 4}),
        )
        .await;
    assert_rest_error(&resumable, 429, ErrorCode::RateLimited);
    server.upload("bob", "1.txt", b"bob's own budget").await;
}
