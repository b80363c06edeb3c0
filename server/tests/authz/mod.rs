//! The machinery of the authorization matrix (`authz_matrix.rs`): the callers and their
//! tokens, the fixtures each cell runs on, the calls that describe an answer as a cell, and the
//! matrix that runs the cells and prints them as a table.

use std::borrow::Cow;
use std::fmt::Write as _;

use confab_protocol::{ClientFrame, Command, ServerFrame};
use futures_util::{StreamExt, stream};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::common::{
    self, RECV_TIMEOUT, SECRET, Server, TENANT, WsClient, admin_token, token, token_in,
};

pub const OWNER: &str = "ann";
pub const ADMIN: &str = "ada";
pub const MEMBER: &str = "meg";
/// A second plain member, whom the role and removal rows act on.
pub const OTHER_MEMBER: &str = "mo";
pub const NON_MEMBER: &str = "nick";
/// An admin of the tenant (token claim `"admin": true`), no member of the fixtures.
pub const TENANT_ADMIN: &str = "tad";
/// The tenant of the other-tenant caller, who has the member's user id there.
pub const OTHER_TENANT: &str = "globex";
/// The bytes of the resumable upload (one chunk).
pub const CHUNK: &[u8] = b"authorization matrix";
/// Cells run at once.
pub const PARALLEL: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Owner,
    Admin,
    Member,
    NonMember,
    OtherTenant,
    TenantAdmin,
    NoToken,
    Expired,
    AlgNone,
    WrongKey,
}

impl Caller {
    pub const ALL: [Caller; 10] = [
        Caller::Owner,
        Caller::Admin,
        Caller::Member,
        Caller::NonMember,
        Caller::OtherTenant,
        Caller::TenantAdmin,
        Caller::NoToken,
        Caller::Expired,
        Caller::AlgNone,
        Caller::WrongKey,
    ];

    /// The caller's column (its place in [`Caller::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Caller::Owner => "owner",
            Caller::Admin => "admin",
            Caller::Member => "member",
            Caller::NonMember => "non-member",
            Caller::OtherTenant => "other-tenant",
            Caller::TenantAdmin => "tenant-admin",
            Caller::NoToken => "no-token",
            Caller::Expired => "expired",
            Caller::AlgNone => "alg-none",
            Caller::WrongKey => "wrong-key",
        }
    }

    /// The user id the caller claims to be.
    pub fn user(self) -> &'static str {
        match self {
            Caller::Owner => OWNER,
            Caller::Admin => ADMIN,
            Caller::NonMember => NON_MEMBER,
            Caller::TenantAdmin => TENANT_ADMIN,
            _ => MEMBER,
        }
    }

    /// The caller's bearer token, if any.
    pub fn token(self) -> Option<String> {
        match self {
            Caller::Owner | Caller::Admin | Caller::Member | Caller::NonMember => {
                Some(token(self.user()))
            }
            Caller::OtherTenant => Some(token_in(MEMBER, OTHER_TENANT)),
            Caller::TenantAdmin => Some(admin_token(TENANT_ADMIN)),
            Caller::NoToken => None,
            Caller::Expired => Some(expired_token()),
            Caller::AlgNone => Some(alg_none_token()),
            Caller::WrongKey => Some(wrong_key_token()),
        }
    }
}

/// The member's token, expired an hour ago (well past the server's leeway).
pub fn expired_token() -> String {
    let exp = jsonwebtoken::get_current_timestamp() - 3600;
    let claims = confab_server::auth::Claims::new(MEMBER, TENANT, exp);
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// The member's valid claims under `{"alg":"none","typ":"JWT"}`, without a signature.
pub fn alg_none_token() -> String {
    const NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let valid = token(MEMBER);
    let claims = valid.split('.').nth(1).expect("a JWT has claims");
    format!("{NONE_HEADER}.{claims}.")
}

/// The member's token signed with a key the server does not have.
pub fn wrong_key_token() -> String {
    confab_server::auth::JwtKeys::from_secret(b"not-the-server-secret-0123456789abcdef")
        .expect("keys")
        .mint(MEMBER, TENANT, None, std::time::Duration::from_secs(3600))
        .expect("mint")
}

// ---- fixtures ----

/// A group owned by [`OWNER`] with [`ADMIN`] (an admin), [`MEMBER`] and [`OTHER_MEMBER`]; a
/// message by the member; an image the member uploaded to it and one the owner did; a
/// resumable upload of the member's with its one chunk in; a signed link to the member's image.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// A word of this fixture's message and of no other, for the search rows.
    pub word: String,
    pub conv: String,
    pub msg: String,
    pub media: String,
    pub owner_media: String,
    pub upload: String,
    pub link: String,
    /// A finished reindex of the tenant (set by the matrix on the shared fixtures; empty in
    /// fresh ones).
    pub job: String,
}

impl Fixture {
    pub async fn build(server: &Server) -> Fixture {
        let conv = server
            .create_group(OWNER, &[ADMIN, MEMBER, OTHER_MEMBER])
            .await;
        let promote = async {
            let path = format!("/v1/conversations/{conv}/members/{ADMIN}");
            let answer = server
                .patch(&path, &token(OWNER), json!({"role": "admin"}))
                .await;
            assert_eq!(answer.0, 200, "make {ADMIN} admin: {answer:?}");
        };
        // Letters only (a-p), so that the search takes it for one word.
        let word: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .bytes()
            .map(|digit| char::from(b'a' + (digit as char).to_digit(16).unwrap_or(0) as u8))
            .collect();
        let send = async {
            let nonce = uuid::Uuid::new_v4().to_string();
            let sent = server
                .rest_send(MEMBER, &conv, &nonce, &format!("hello {word}"))
                .await;
            id_of(&sent, "id")
        };
        let upload = async {
            let body = json!({"name": "notes.txt", "size": CHUNK.len(), "conversation": conv});
            let created = server.post("/v1/media/uploads", &token(MEMBER), body).await;
            assert_eq!(created.0, 201, "create an upload: {created:?}");
            let upload = id_of(&created.1, "upload_id");
            let chunk = chunk(server, &upload, Some(&bearer(MEMBER))).await;
            assert_eq!(chunk.0, 204, "the upload's chunk: {chunk:?}");
            upload
        };
        let (_, msg, media, owner_media, upload) = tokio::join!(
            promote,
            send,
            upload_image(server, MEMBER, &conv),
            upload_image(server, OWNER, &conv),
            upload
        );
        let signed = server
            .post(
                &format!("/v1/media/{media}/signed"),
                &token(MEMBER),
                json!({}),
            )
            .await;
        assert_eq!(signed.0, 200, "sign a link: {signed:?}");
        let link = id_of(&signed.1, "url");
        Fixture {
            word,
            conv,
            msg,
            media,
            owner_media,
            upload,
            link,
            job: String::new(),
        }
    }

    /// The fixtures a cell runs on: its own for a call that changes something (`fresh`), else
    /// the shared set.
    pub async fn for_cell<'a>(
        server: &Server,
        shared: &'a Fixture,
        fresh: bool,
    ) -> Cow<'a, Fixture> {
        if fresh {
            Cow::Owned(Fixture::build(server).await)
        } else {
            Cow::Borrowed(shared)
        }
    }

    /// `template` with the fixture's ids, the caller's user id and a fresh nonce.
    pub fn fill(&self, template: &str, caller: Caller) -> String {
        template
            .replace("{word}", &self.word)
            .replace("{conv}", &self.conv)
            .replace("{msg}", &self.msg)
            .replace("{owner_media}", &self.owner_media)
            .replace("{media}", &self.media)
            .replace("{upload}", &self.upload)
            .replace("{link}", &self.link)
            .replace("{job}", &self.job)
            .replace("{caller}", caller.user())
            .replace("{nonce}", &uuid::Uuid::new_v4().to_string())
    }
}

pub fn id_of(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no `{field}` in {body}"))
        .to_owned()
}

pub fn bearer(user: &str) -> String {
    format!("Bearer {}", token(user))
}

/// A 2×2 PNG (thumbnails are made of images only).
pub fn png() -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(2, 2, |x, y| image::Rgb([x as u8, y as u8, 9]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

pub async fn upload_image(server: &Server, user: &str, conv: &str) -> String {
    let answer = server
        .upload_raw(Some(&bearer(user)), "dot.png", &png(), Some(conv))
        .await;
    assert_eq!(answer.0, 201, "upload as {user}: {answer:?}");
    id_of(&answer.1, "id")
}

/// `PUT` chunk 0 of `upload` (its whole content).
pub async fn chunk(server: &Server, upload: &str, authorization: Option<&str>) -> (u16, Value) {
    server
        .request_raw(
            Method::PUT,
            &format!("/v1/media/uploads/{upload}/chunks/0"),
            authorization,
            Some("application/octet-stream"),
            CHUNK.to_vec(),
        )
        .await
}

/// `STATUS`, `STATUS CODE` for an error body, with `+`/`-` after the status when the row has a
/// marker (whether the body names it).
pub fn describe_answer(status: u16, body: &Value, marker: Option<&str>) -> String {
    let mut cell = status.to_string();
    if let Some(marker) = marker.filter(|_| (200..300).contains(&status)) {
        cell.push(if body.to_string().contains(marker) {
            '+'
        } else {
            '-'
        });
    }
    if let Some(code) = body["error"]["code"].as_str() {
        write!(cell, " {code}").expect("write to a String");
    }
    cell
}

/// Opens a session with `token` on the upgrade; a refusal is described as a cell.
pub async fn connect(server: &Server, token: &str) -> Result<WsClient, String> {
    let mut request = server.ws_url().into_client_request().expect("ws request");
    let value = format!("Bearer {token}").parse().expect("header value");
    request.headers_mut().insert("authorization", value);
    match WsClient::open(request, None).await {
        Ok(mut client) => {
            client.expect_welcome().await;
            Ok(client)
        }
        Err(tungstenite::Error::Http(response)) => {
            let code = response
                .body()
                .as_ref()
                .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
                .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Err(format!("http {} {code}", response.status().as_u16()))
        }
        Err(other) => Err(format!("upgrade failed: {other}")),
    }
}

/// Sends `command` as the first frame of a connection that carried no token.
pub async fn unauthenticated(server: &Server, command: Command) -> String {
    let mut client = server.ws_anonymous().await;
    client.send(ClientFrame::with_ref("cell", command)).await;
    let closed = client.expect_close(RECV_TIMEOUT).await;
    let code = closed
        .code
        .map_or("none".to_owned(), |code| code.to_string());
    let errors: Vec<String> = closed.frames.iter().map(describe_frame).collect();
    format!(
        "close {code} {}",
        errors.join(",").trim_start_matches("error ")
    )
}

pub fn describe_frame(frame: &ServerFrame) -> String {
    match frame {
        ServerFrame::Error { code, .. } => format!("error {}", code.as_str()),
        other => common::frame_type(other),
    }
}

// ---- the matrix ----

/// Rows of cells, each the expected and the actual answer.
#[derive(Default)]
pub struct Matrix {
    /// The column headers (the callers' labels unless set).
    pub columns: Vec<&'static str>,
    pub rows: Vec<(String, Vec<(&'static str, String)>)>,
    /// Problems outside the cells (routes without rows).
    pub problems: Vec<String>,
}

impl Matrix {
    /// An empty matrix with a column per caller.
    pub fn of_callers() -> Matrix {
        Matrix {
            columns: Caller::ALL.iter().map(|caller| caller.label()).collect(),
            ..Matrix::default()
        }
    }

    pub fn mismatches(&self) -> Vec<String> {
        let mut found = self.problems.clone();
        for (label, cells) in &self.rows {
            for (column, (expected, got)) in self.columns.iter().zip(cells) {
                if expected != got {
                    found.push(format!(
                        "{label} ({column}): expected `{expected}`, got `{got}`"
                    ));
                }
            }
        }
        found
    }

    /// The table: each cell's answer, `want≠got` where it differs.
    pub fn render(&self, title: &str) -> String {
        let cell_text = |(expected, got): &(&str, String)| {
            if *expected == got.as_str() {
                got.clone()
            } else {
                format!("!{expected}≠{got}")
            }
        };
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.len()).collect();
        for (_, cells) in &self.rows {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell_text(cell).chars().count());
            }
        }
        let mut out = format!("{title:width$}");
        for (column, w) in self.columns.iter().zip(&widths) {
            write!(out, " | {column:w$}").expect("write to a String");
        }
        out.push('\n');
        for (label, cells) in &self.rows {
            write!(out, "{label:width$}").expect("write to a String");
            for (cell, w) in cells.iter().zip(&widths) {
                let text = cell_text(cell);
                let pad = w.saturating_sub(text.chars().count());
                write!(out, " | {text}{}", " ".repeat(pad)).expect("write to a String");
            }
            out.push('\n');
        }
        out
    }
}

/// Runs every cell of `rows`, [`PARALLEL`] at a time.
pub async fn run<'a, R, F>(rows: &'a [R], label: impl Fn(&R) -> String, cell: F) -> Matrix
where
    F: Fn(
        &'a R,
        Caller,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (&'static str, String)> + 'a>>,
{
    let calls = rows
        .iter()
        .enumerate()
        .flat_map(|(index, row)| Caller::ALL.iter().map(move |caller| (index, row, *caller)));
    let mut answers: Vec<(usize, Caller, (&'static str, String))> = stream::iter(calls)
        .map(|(index, row, caller)| {
            let answer = cell(row, caller);
            async move { (index, caller, answer.await) }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    answers.sort_by_key(|(index, caller, _)| (*index, caller.index()));
    let mut matrix = Matrix::of_callers();
    for (index, row) in rows.iter().enumerate() {
        let cells = answers
            .iter()
            .filter(|(i, _, _)| *i == index)
            .map(|(_, _, cell)| cell.clone())
            .collect();
        matrix.rows.push((label(row), cells));
    }
    matrix
}
