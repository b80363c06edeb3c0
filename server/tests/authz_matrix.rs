//! The authorization matrix (issue 15): every REST route of the served OpenAPI document and
//! every WebSocket command, called as each kind of caller, each cell asserting the status (and
//! error code) it must get. The callers: the conversation's owner, an admin, a member, a user
//! of the same tenant who is no member, the member's user id in another tenant, an admin of
//! the tenant (token claim `"admin": true`, no member of the fixtures), and four token
//! failures (none, expired, `alg: none`, signed with another key), each of which would
//! otherwise be the member.
//!
//! The routes come from `/v1/openapi.json` at test time: a documented route without a row here
//! fails the test, and so does a row naming an undocumented route. A call that changes
//! something runs on fixtures of its own (`fresh`), so that no cell depends on another or on
//! the order they run in; reads share one set. Every mismatch is reported at once, with the
//! whole matrix printed as a table.

mod authz;
mod common;

use std::collections::BTreeSet;

use authz::{
    Caller, Fixture, MEMBER, Matrix, OTHER_TENANT, OWNER, TENANT_ADMIN, chunk, connect,
    describe_answer, describe_frame, id_of, png, run, unauthenticated,
};
use common::{Server, TENANT, UNSET, admin_token_in, token};
use confab_protocol::{ClientFrame, Command};
use reqwest::Method;
use serde_json::{Value, json};

// ---- REST rows ----

enum Body {
    Empty,
    /// JSON, with the fixture's placeholders.
    Json(&'static str),
    /// The multipart form of `POST /v1/media`, naming the fixture's conversation.
    File,
    /// The upload's chunk.
    Chunk,
}

/// What each caller gets.
enum Cells {
    /// A route behind a token: the answers of the five identities but the tenant admin, who
    /// gets the non-member's unless the row says otherwise; each token failure is `401
    /// unauthorized`.
    Token([&'static str; 5]),
    /// A route that takes no token: every caller (its token, if any, ignored) gets this.
    Public(&'static str),
}

/// One row: a call of one route. A cell is `STATUS [CODE]`, the status optionally followed by
/// `+` (the body names `marker`) or `-` (it does not).
struct RestRow {
    method: Method,
    /// The route as the OpenAPI document names it.
    route: &'static str,
    /// The call, with the fixture's placeholders (`{conv}`, `{msg}`, `{media}`,
    /// `{owner_media}`, `{upload}`, `{link}`, `{caller}`, `{nonce}`).
    path: &'static str,
    body: Body,
    /// The call changes something: each cell runs on fixtures of its own.
    fresh: bool,
    marker: Option<&'static str>,
    /// What the row calls, when a route has several rows.
    note: Option<&'static str>,
    /// The call clears what other rows read (the caller's recent searches): it runs after them.
    last: bool,
    cells: Cells,
    /// What the tenant admin gets, when not the non-member's answer.
    tenant_admin: Option<&'static str>,
}

/// Routes served without a token that the OpenAPI document does not list.
const UNDOCUMENTED: [&str; 3] = ["/v1/openapi.json", "/v1/protocol.schema.json", "/docs"];

fn row(method: Method, route: &'static str, path: &'static str, cells: Cells) -> RestRow {
    RestRow {
        method,
        route,
        path,
        body: Body::Empty,
        fresh: false,
        marker: None,
        note: None,
        last: false,
        cells,
        tenant_admin: None,
    }
}

impl RestRow {
    fn json(mut self, body: &'static str) -> RestRow {
        self.body = Body::Json(body);
        self
    }

    fn body(mut self, body: Body) -> RestRow {
        self.body = body;
        self
    }

    fn fresh(mut self) -> RestRow {
        self.fresh = true;
        self
    }

    fn note(mut self, note: &'static str) -> RestRow {
        self.note = Some(note);
        self
    }

    fn last(mut self) -> RestRow {
        self.last = true;
        self
    }

    fn marker(mut self, marker: &'static str) -> RestRow {
        self.marker = Some(marker);
        self
    }

    fn tenant_admin(mut self, cell: &'static str) -> RestRow {
        self.tenant_admin = Some(cell);
        self
    }
}

/// The REST rows. A table, laid out by hand: one row per line or two.
#[rustfmt::skip]
fn rest_rows() -> Vec<RestRow> {
    use Cells::{Public, Token};
    use Method as M;
    let conv = "/v1/conversations/{id}";
    let members = "/v1/conversations/{id}/members";
    let member = "/v1/conversations/{id}/members/{user}";
    let messages = "/v1/conversations/{id}/messages";
    let message = "/v1/messages/{id}";
    let upload = "/v1/media/uploads/{upload_id}";
    let media = "/v1/media/{id}";
    let search = "/v1/search/messages";
    // The cells most rows share.
    let read = ["200", "200", "200", "403 not_member", "404 not_found"];
    let sent = ["201", "201", "201", "403 not_member", "404 not_found"];
    let manage = ["200", "200", "403 forbidden", "403 not_member", "404 not_found"];
    let add = ["201", "201", "403 forbidden", "403 not_member", "404 not_found"];
    let owner_only = ["200", "403 forbidden", "403 forbidden", "403 not_member", "404 not_found"];
    // The marker found in the body, or not.
    let found = ["200+", "200+", "200+", "200-", "200-"];
    // A file is invisible to whoever may not see it: 404, not 403, so that its id reveals
    // nothing.
    let media_read = ["200", "200", "200", "404 not_found", "404 not_found"];
    // Only the member's own upload is found: `ok` for the member, 404 for anyone else.
    let own_upload = |ok| ["404 not_found", "404 not_found", ok, "404 not_found", "404 not_found"];
    vec![
        // Ops and documents: no token.
        row(M::GET, "/health", "/health", Public("200")),
        row(M::GET, "/ready", "/ready", Public("200")),
        row(M::GET, "/metrics", "/metrics", Public("200")),
        row(M::GET, "/v1/openapi.json", "/v1/openapi.json", Public("200")),
        row(M::GET, "/v1/protocol.schema.json", "/v1/protocol.schema.json", Public("200")),
        row(M::GET, "/docs", "/docs", Public("200")),
        // With a configured key the development sign-in does not exist (the own expectations
        // have it enabled).
        row(M::POST, "/v1/dev/token", "/v1/dev/token", Public("404 not_found"))
            .json(r#"{"user": "eve"}"#),
        // A signed link works for whoever holds it, token or not.
        row(M::GET, "/v1/signed/media/{id}", "{link}", Public("200")),
        // Conversations: each caller lists only their own.
        row(M::GET, "/v1/conversations", "/v1/conversations", Token(found)).marker("{conv}"),
        row(M::POST, "/v1/conversations", "/v1/conversations", Token(["201"; 5]))
            .json(r#"{"kind": "group", "title": "new", "members": ["mo"]}"#),
        row(M::GET, conv, "/v1/conversations/{conv}", Token(read)),
        row(M::PATCH, conv, "/v1/conversations/{conv}", Token(manage))
            .json(r#"{"title": "renamed"}"#).fresh(),
        row(M::PUT, "/v1/conversations/{id}/read", "/v1/conversations/{conv}/read",
            Token(["204", "204", "204", "403 not_member", "404 not_found"]))
            .json(r#"{"seq": 1}"#),
        // Members.
        row(M::GET, members, "/v1/conversations/{conv}/members", Token(read)),
        row(M::POST, members, "/v1/conversations/{conv}/members", Token(add))
            .json(r#"{"user": "newbie"}"#).fresh(),
        // Only an owner makes an admin.
        row(M::POST, members, "/v1/conversations/{conv}/members",
            Token(["201", "403 forbidden", "403 forbidden", "403 not_member", "404 not_found"]))
            .json(r#"{"user": "newbie", "role": "admin"}"#).fresh().note("an admin"),
        row(M::PATCH, member, "/v1/conversations/{conv}/members/mo", Token(owner_only))
            .json(r#"{"role": "admin"}"#).fresh(),
        row(M::DELETE, member, "/v1/conversations/{conv}/members/mo", Token(manage)).fresh(),
        // Removing the owner: only the owner, and not while others remain (the last owner).
        row(M::DELETE, member, "/v1/conversations/{conv}/members/ann",
            Token(["409 conflict", "403 forbidden", "403 forbidden", "403 not_member",
                "404 not_found"])).fresh().note("the owner"),
        // Leaving (the caller removes themself).
        row(M::DELETE, member, "/v1/conversations/{conv}/members/{caller}",
            Token(["409 conflict", "200", "200", "403 not_member", "404 not_found"])).fresh()
            .note("leave"),
        // Messages.
        row(M::GET, messages, "/v1/conversations/{conv}/messages", Token(read)),
        row(M::POST, messages, "/v1/conversations/{conv}/messages", Token(sent))
            .json(r#"{"client_msg_id": "{nonce}", "body": "hi"}"#),
        // Forwarding the member's file into one's own conversation: its uploader only; to
        // whoever cannot see it the file does not exist (`conflict`, as any missing attachment).
        row(M::POST, messages, "/v1/conversations/{own_conv}/messages",
            Token(["403 forbidden", "403 forbidden", "201", "409 conflict", "409 conflict"]))
            .json(r#"{"client_msg_id": "{nonce}", "body": "", "attachments": [{"id": "{media}"}]}"#)
            .note("forward the member's file"),
        row(M::GET, message, "/v1/messages/{msg}", Token(read)),
        // Only the author edits (the other tenant's caller has the author's user id).
        row(M::PATCH, message, "/v1/messages/{msg}",
            Token(["403 forbidden", "403 forbidden", "200", "403 not_member", "404 not_found"]))
            .json(r#"{"body": "edited"}"#).fresh(),
        row(M::DELETE, message, "/v1/messages/{msg}", Token(read)).fresh(),
        row(M::POST, "/v1/messages/{id}/reactions", "/v1/messages/{msg}/reactions", Token(read))
            .json(r#"{"emoji": "👍"}"#).fresh(),
        row(M::DELETE, "/v1/messages/{id}/reactions/{emoji}",
            "/v1/messages/{msg}/reactions/%F0%9F%91%8D", Token(read)).fresh(),
        // Media: a file is its uploader's and its conversations' members'.
        row(M::POST, "/v1/media", "/v1/media", Token(sent)).body(Body::File),
        row(M::POST, "/v1/media/uploads", "/v1/media/uploads", Token(sent))
            .json(r#"{"name": "a.txt", "size": 5, "conversation": "{conv}"}"#),
        row(M::GET, upload, "/v1/media/uploads/{upload}", Token(own_upload("200"))),
        row(M::DELETE, upload, "/v1/media/uploads/{upload}", Token(own_upload("204"))).fresh(),
        row(M::PUT, "/v1/media/uploads/{upload_id}/chunks/{n}",
            "/v1/media/uploads/{upload}/chunks/0", Token(own_upload("204")))
            .body(Body::Chunk).fresh(),
        row(M::POST, "/v1/media/uploads/{upload_id}/complete",
            "/v1/media/uploads/{upload}/complete", Token(own_upload("201"))).fresh(),
        row(M::GET, media, "/v1/media/{media}", Token(media_read)),
        row(M::GET, "/v1/media/{id}/meta", "/v1/media/{media}/meta", Token(media_read)),
        row(M::GET, "/v1/media/{id}/thumbnail", "/v1/media/{media}/thumbnail", Token(media_read)),
        row(M::POST, "/v1/media/{id}/signed", "/v1/media/{media}/signed", Token(media_read)),
        // The member's file: its uploader, or an owner or admin of its conversation, deletes it.
        row(M::DELETE, media, "/v1/media/{media}",
            Token(["204", "204", "204", "404 not_found", "404 not_found"])).fresh(),
        // The owner's file: a plain member sees it but may not delete it.
        row(M::DELETE, media, "/v1/media/{owner_media}",
            Token(["204", "204", "403 forbidden", "404 not_found", "404 not_found"])).fresh(),
        // Search: anyone may search, and finds only what they may read, however they ask.
        row(M::GET, search, "/v1/search/messages?q={word}", Token(found)).marker("{msg}"),
        row(M::GET, search, "/v1/search/messages?q={word}&conversation={conv}", Token(found))
            .marker("{msg}"),
        row(M::GET, search, "/v1/search/messages?q=in:{conv}%20{word}", Token(found))
            .marker("{msg}"),
        // All three kinds at once, and the caller's conversations by title.
        row(M::GET, "/v1/search", "/v1/search?q={word}", Token(found)).marker("{msg}"),
        row(M::GET, "/v1/search/conversations", "/v1/search/conversations?q=test%20group",
            Token(found)).marker("{conv}"),
        // Completions come only from what the caller may read.
        row(M::GET, "/v1/search/suggestions", "/v1/search/suggestions?prefix={word}",
            Token(found)).marker("{word}"),
        // Recent searches: each caller's own (only the member searched the marker).
        row(M::GET, "/v1/search/recent", "/v1/search/recent",
            Token(["200-", "200-", "200+", "200-", "200-"])).marker("recently {word}"),
        row(M::DELETE, "/v1/search/recent", "/v1/search/recent", Token(["204"; 5])).last(),
        // The people of one's own tenant.
        row(M::GET, "/v1/search/users", "/v1/search/users?q=ann",
            Token(["200+", "200+", "200+", "200+", "200-"])).marker(r#""id":"ann""#),
        // A tenant admin's routes: only a token with `"admin": true` (the other tenant's
        // admin is in `own_expectations`).
        row(M::POST, "/v1/admin/reindex", "/v1/admin/reindex", Token(["403 forbidden"; 5]))
            .tenant_admin("202"),
        row(M::GET, "/v1/admin/reindex", "/v1/admin/reindex", Token(["403 forbidden"; 5]))
            .tenant_admin("200+").marker("{job}"),
        row(M::GET, "/v1/admin/reindex/{id}", "/v1/admin/reindex/{job}",
            Token(["403 forbidden"; 5])).tenant_admin("200"),
        row(M::GET, "/v1/admin/reindex/{id}", "/v1/admin/reindex/nope",
            Token(["403 forbidden"; 5])).tenant_admin("404 not_found").note("unknown job"),
    ]
}

impl RestRow {
    fn label(&self) -> String {
        let call = format!("{} {}", self.method, self.path);
        match self.note {
            Some(note) => format!("{call} ({note})"),
            None => call,
        }
    }

    /// What `caller` must get.
    fn expected(&self, caller: Caller) -> &'static str {
        match &self.cells {
            Cells::Public(cell) => cell,
            Cells::Token(cells) if caller == Caller::TenantAdmin => self
                .tenant_admin
                .unwrap_or(cells[Caller::NonMember.index()]),
            Cells::Token(cells) => cells.get(caller.index()).unwrap_or(&"401 unauthorized"),
        }
    }

    /// Calls the row as `caller` and describes the answer as a cell.
    async fn call(&self, server: &Server, shared: &Fixture, caller: Caller) -> String {
        let fixture = &*Fixture::for_cell(server, shared, self.fresh).await;
        let own = own_conversation(server, fixture, caller, self).await;
        let fill = |template: &str| fixture.fill(template, caller).replace("{own_conv}", &own);
        let path = fill(self.path);
        let authorization = caller.token().map(|token| format!("Bearer {token}"));
        let authorization = authorization.as_deref();
        let (status, body) = match &self.body {
            Body::Empty | Body::Json(_) => {
                let content_type = matches!(self.body, Body::Json(_)).then_some("application/json");
                let bytes = match &self.body {
                    Body::Json(template) => fill(template).into_bytes(),
                    _ => Vec::new(),
                };
                server
                    .request_raw(
                        self.method.clone(),
                        &path,
                        authorization,
                        content_type,
                        bytes,
                    )
                    .await
            }
            Body::File => {
                server
                    .upload_raw(authorization, "dot.png", &png(), Some(&fixture.conv))
                    .await
            }
            Body::Chunk => chunk(server, &fixture.upload, authorization).await,
        };
        let marker = self.marker.map(fill);
        describe_answer(status, &body, marker.as_deref())
    }
}

/// For a row naming `{own_conv}`: a group the caller creates for the cell (with the owner in it,
/// so that it has another member); the fixture's conversation for the token failures.
async fn own_conversation(
    server: &Server,
    fixture: &Fixture,
    caller: Caller,
    row: &RestRow,
) -> String {
    let named = row.path.contains("{own_conv}")
        || matches!(row.body, Body::Json(body) if body.contains("{own_conv}"));
    let Some(token) = caller
        .token()
        .filter(|_| named && Caller::ALL[..6].contains(&caller))
    else {
        return fixture.conv.clone();
    };
    let body = json!({"kind": "group", "title": "own", "members": [OWNER]});
    let (status, created) = server.post("/v1/conversations", &token, body).await;
    assert_eq!(status, 201, "{} creates a group: {created}", caller.label());
    id_of(&created, "id")
}

// ---- WebSocket rows ----

/// One WebSocket command. Cells are the reply's `type`, or `error CODE`; token failures on the
/// upgrade are `http 401 unauthorized`, and a command sent without authenticating first
/// `close 4001 unauthorized`.
struct WsRow {
    name: &'static str,
    command: fn(&Fixture, Caller) -> Command,
    /// The command changes something: each cell runs on fixtures of its own.
    fresh: bool,
    /// The caller joins the conversation first (or tries to).
    join_first: bool,
    /// `refresh`: the session is the member's and the command carries the caller's token, so
    /// the token failures are answered in the session.
    refresh: bool,
    cells: [&'static str; 5],
}

const WS_JOINED: [&str; 5] = [
    "joined",
    "joined",
    "joined",
    "error not_member",
    "error not_found",
];
const WS_OK: [&str; 5] = ["ok", "ok", "ok", "error not_member", "error not_found"];

fn ws(
    name: &'static str,
    command: fn(&Fixture, Caller) -> Command,
    cells: [&'static str; 5],
) -> WsRow {
    WsRow {
        name,
        command,
        fresh: false,
        join_first: false,
        refresh: false,
        cells,
    }
}

impl WsRow {
    fn fresh(mut self) -> WsRow {
        self.fresh = true;
        self
    }

    fn refresh(mut self) -> WsRow {
        self.refresh = true;
        self
    }

    fn join_first(mut self) -> WsRow {
        self.join_first = true;
        self
    }

    fn expected(&self, caller: Caller) -> &'static str {
        match caller {
            Caller::NoToken => "close 4001 unauthorized",
            Caller::Expired | Caller::AlgNone | Caller::WrongKey if self.refresh => {
                "error unauthorized"
            }
            Caller::Expired | Caller::AlgNone | Caller::WrongKey => "http 401 unauthorized",
            // No member of the fixtures, like the non-member.
            Caller::TenantAdmin => self.cells[Caller::NonMember.index()],
            identity => self.cells[identity.index()],
        }
    }

    async fn call(&self, server: &Server, shared: &Fixture, caller: Caller) -> String {
        let fixture = &*Fixture::for_cell(server, shared, self.fresh).await;
        let command = (self.command)(fixture, caller);
        let session_token = match caller.token() {
            None => return unauthenticated(server, command).await,
            Some(_) if self.refresh => token(MEMBER),
            Some(own) => own,
        };
        let mut client = match connect(server, &session_token).await {
            Ok(client) => client,
            Err(refused) => return refused,
        };
        if self.join_first {
            let join = Command::Join {
                conversation: fixture.conv.clone(),
                since: None,
            };
            client.send(ClientFrame::with_ref("join", join)).await;
            client.reply_to("join").await;
        }
        let reply = client.request(command).await;
        client.close().await;
        describe_frame(&reply)
    }
}

/// The WebSocket rows. A table, laid out by hand: one row per line or two.
#[rustfmt::skip]
fn ws_rows() -> Vec<WsRow> {
    vec![
        ws("join", |f, _| Command::Join { conversation: f.conv.clone(), since: None }, WS_JOINED),
        // With `since`, the backlog is read too: the same answers.
        ws("join since 0", |f, _| Command::Join { conversation: f.conv.clone(), since: Some(0) },
            WS_JOINED),
        // Leaving opens nothing: it answers `left` whether or not the caller had joined.
        ws("leave", |f, _| Command::Leave { conversation: f.conv.clone() }, ["left"; 5])
            .join_first(),
        ws("send", |f, _| common::send_command(&f.conv, &uuid::Uuid::new_v4().to_string(), "hi"),
            ["ack", "ack", "ack", "error not_member", "error not_found"]),
        ws("edit", |f, _| Command::Edit { message: f.msg.clone(), body: "edited".into() },
            ["error forbidden", "error forbidden", "ok", "error not_member", "error not_found"])
            .fresh(),
        ws("delete", |f, _| Command::Delete { message: f.msg.clone() }, WS_OK).fresh(),
        ws("react", |f, _| Command::React { message: f.msg.clone(), emoji: "👍".into() }, WS_OK)
            .fresh(),
        ws("unreact", |f, _| Command::Unreact { message: f.msg.clone(), emoji: "👍".into() },
            WS_OK).fresh(),
        // Typing goes to joined conversations only: who cannot join cannot type.
        ws("typing", |f, _| Command::Typing { conversation: f.conv.clone() },
            ["ok", "ok", "ok", "error forbidden", "error forbidden"]).join_first(),
        ws("read", |f, _| Command::Read { conversation: f.conv.clone(), seq: 1 }, WS_OK),
        // The member's session, refreshed with the caller's token: only a token of the same
        // user and tenant may take it over.
        ws("refresh", |_, caller| Command::Refresh {
            token: caller.token().unwrap_or_else(|| token(MEMBER)),
        }, ["error forbidden", "error forbidden", "ok", "error forbidden", "error forbidden"])
            .refresh(),
        ws("ping", |_, _| Command::Ping, ["pong"; 5]),
    ]
}

/// The routes of the served OpenAPI document: method, path, whether it asks for a token.
async fn documented_routes(server: &Server) -> Vec<(Method, String, bool)> {
    let (status, doc) = server
        .request(Method::GET, "/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, 200, "the OpenAPI document");
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut routes = Vec::new();
    for (path, item) in paths {
        for method in [
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
        ] {
            let Some(operation) = item.get(method.as_str().to_lowercase()) else {
                continue;
            };
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            routes.push((method, path.clone(), secured));
        }
    }
    routes
}

/// Every documented route has a row, with a token exactly when the document asks for one; every
/// row names a documented route (or one of the [`UNDOCUMENTED`] public ones).
fn coverage(documented: &[(Method, String, bool)], rows: &[RestRow]) -> Vec<String> {
    let mut problems = Vec::new();
    for (method, path, secured) in documented {
        let matching: Vec<&RestRow> = rows
            .iter()
            .filter(|row| row.method == *method && row.route == path)
            .collect();
        if matching.is_empty() {
            problems.push(format!(
                "{method} {path} is in the OpenAPI document but has no row"
            ));
        }
        for row in matching {
            if matches!(row.cells, Cells::Token(_)) != *secured {
                problems.push(format!(
                    "{method} {path}: the document says token required = {secured}, the row does not"
                ));
            }
        }
    }
    let known: BTreeSet<(String, &str)> = documented
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.as_str()))
        .collect();
    for row in rows {
        let documented = known.contains(&(row.method.to_string(), row.route));
        if !documented && !UNDOCUMENTED.contains(&row.route) {
            problems.push(format!(
                "row {} names a route the document lacks",
                row.label()
            ));
        }
    }
    problems
}

/// The cells with expectations of their own: the development sign-in on a server that has it
/// (generated key, loopback), signed links that were changed, and another tenant's admin.
async fn own_expectations(server: &Server, shared: &Fixture) -> Matrix {
    let dev = Server::in_process(&["--jwt-secret", UNSET]).await;
    let mut cells: Vec<(String, &'static str, String)> = Vec::new();
    let body = r#"{"user": "eve"}"#.as_bytes().to_vec();
    for (label, header, expected) in [
        ("POST /v1/dev/token (generated key, loopback)", None, "200"),
        (
            "  … through a proxy (X-Forwarded-For)",
            Some(("x-forwarded-for", "203.0.113.9")),
            "403 forbidden",
        ),
        (
            "  … from a page of another origin",
            Some(("origin", "https://evil.example")),
            "403 forbidden",
        ),
    ] {
        let mut request = dev
            .client()
            .post(format!("{}/v1/dev/token", dev.base()))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("POST /v1/dev/token");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        cells.push((
            label.to_owned(),
            expected,
            describe_answer(status, &answer, None),
        ));
    }
    let link = &shared.link;
    let tampered = [
        (
            "GET signed link, signature changed",
            link.replacen("sig=", "sig=00", 1),
        ),
        (
            "GET signed link, expiry moved",
            link.replacen("expires=", "expires=9", 1),
        ),
        (
            "GET signed link, other tenant",
            link.replacen(
                &format!("tenant={TENANT}"),
                &format!("tenant={OTHER_TENANT}"),
                1,
            ),
        ),
        (
            "GET signed link, other file",
            link.replacen(&shared.media, &shared.owner_media, 1),
        ),
    ];
    for (label, path) in tampered {
        assert_ne!(&path, link, "{label}: the link has that part");
        let (status, answer) = server.request(Method::GET, &path, None, None).await;
        cells.push((
            label.to_owned(),
            "403 forbidden",
            describe_answer(status, &answer, None),
        ));
    }
    // Another tenant's admin neither sees this tenant's reindexes nor starts one of it.
    let globex_admin = admin_token_in(TENANT_ADMIN, OTHER_TENANT);
    let job_path = format!("/v1/admin/reindex/{}", shared.job);
    for (label, method, path, marker, expected) in [
        (
            "GET this tenant's reindex as another tenant's admin",
            Method::GET,
            job_path.as_str(),
            None,
            "404 not_found",
        ),
        (
            "GET /v1/admin/reindex as another tenant's admin",
            Method::GET,
            "/v1/admin/reindex",
            Some(shared.job.as_str()),
            "200-",
        ),
        (
            "POST /v1/admin/reindex as another tenant's admin (of its tenant)",
            Method::POST,
            "/v1/admin/reindex",
            None,
            "202",
        ),
    ] {
        let (status, answer) = server
            .request(method, path, Some(&globex_admin), None)
            .await;
        cells.push((
            label.to_owned(),
            expected,
            describe_answer(status, &answer, marker),
        ));
    }
    Matrix {
        columns: vec!["answer"],
        rows: cells
            .into_iter()
            .map(|(label, expected, got)| (label, vec![(expected, got)]))
            .collect(),
        problems: Vec::new(),
    }
}

/// Waits (up to 10 s) until the member's search finds the shared message and the people search
/// the owner, and the member's recent searches hold `recently {word}`, so that a search cell that finds nothing means "not allowed", not "not yet".
async fn wait_for_search(server: &Server, shared: &Fixture) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, messages) = server
            .get(
                &format!("/v1/search/messages?q={}", shared.word),
                &token(MEMBER),
            )
            .await;
        let (_, people) = server.get("/v1/search/users?q=ann", &token(MEMBER)).await;
        // The member's recent search, recorded after the answer.
        let recently = format!("recently {}", shared.word);
        let (_, recent) = server.get("/v1/search/recent", &token(MEMBER)).await;
        if !recent.to_string().contains(&recently) {
            let path = format!("/v1/search/messages?q={}", recently.replace(' ', "%20"));
            server.get(&path, &token(MEMBER)).await;
        }
        if messages.to_string().contains(&shared.msg)
            && people.to_string().contains(r#""id":"ann""#)
            && recent.to_string().contains(&recently)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "search did not find the fixtures: {messages} {people}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs a reindex of the tenant to its end (so that the rows find one, and that the row that
/// starts one finds none running) and returns its id.
async fn finished_reindex(server: &Server) -> String {
    let admin = common::admin_token(TENANT_ADMIN);
    let (status, job) = server
        .request(Method::POST, "/v1/admin/reindex", Some(&admin), None)
        .await;
    assert_eq!(status, 202, "start a reindex: {job}");
    let id = id_of(&job, "id");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, job) = server.get(&format!("/v1/admin/reindex/{id}"), &admin).await;
        if job["state"] == "done" {
            return id;
        }
        assert!(
            job["state"] == "running" && std::time::Instant::now() < deadline,
            "the reindex did not finish: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_and_command_as_every_caller() {
    let started = std::time::Instant::now();
    let server = Server::in_process(&["--media-uploads-per-minute", "0"]).await;
    let mut shared = Fixture::build(&server).await;
    wait_for_search(&server, &shared).await;
    shared.job = finished_reindex(&server).await;

    let mut rest = rest_rows();
    // Rows that clear what others read run after all of them.
    rest.sort_by_key(|row| row.last);
    let first = rest.partition_point(|row| !row.last);
    let documented = documented_routes(&server).await;
    let mut rest_matrix = Matrix::of_callers();
    for rows in [&rest[..first], &rest[first..]] {
        let part = run(rows, RestRow::label, |row, caller| {
            let (server, shared) = (&server, &shared);
            Box::pin(async move { (row.expected(caller), row.call(server, shared, caller).await) })
        })
        .await;
        rest_matrix.rows.extend(part.rows);
    }
    rest_matrix.problems = coverage(&documented, &rest);

    let commands = ws_rows();
    let ws_matrix = run(
        &commands,
        |row| format!("ws {}", row.name),
        |row, caller| {
            let (server, shared) = (&server, &shared);
            Box::pin(async move { (row.expected(caller), row.call(server, shared, caller).await) })
        },
    )
    .await;

    let own = own_expectations(&server, &shared).await;

    let tables = format!(
        "{}\n{}\n{}",
        rest_matrix.render("REST"),
        ws_matrix.render("WebSocket"),
        own.render("Own expectations")
    );
    println!("{tables}");
    let mismatches: Vec<String> = [rest_matrix, ws_matrix, own]
        .iter()
        .flat_map(Matrix::mismatches)
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} problems (cells marked `!want≠got` in the tables):\n{}\n\n{tables}",
        mismatches.len(),
        mismatches.join("\n")
    );
    let elapsed = started.elapsed();
    println!(
        "{} REST rows, {} commands, {} callers in {elapsed:.1?}",
        rest.len(),
        commands.len(),
        Caller::ALL.len()
    );
}
