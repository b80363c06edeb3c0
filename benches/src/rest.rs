//! The REST calls the generator makes: setting up conversations and members, paging history,
//! and reading `/metrics`.

use std::time::Duration;

use anyhow::{Context, bail};
use confab_protocol::limits::MAX_INITIAL_MEMBERS;
use confab_protocol::rest::{
    AddMember, Conversation, ConversationKind, ConversationList, CreateConversation, MessagePage,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A REST client of one server.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    /// `base` is the server's URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> anyhow::Result<Rest> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(Rest {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> anyhow::Result<T> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("{method} {path}: {status}: {text}");
        }
        Ok(response.json().await?)
    }

    /// Creates a group owned by the token's user with `members` (any number: past the creation
    /// limit the rest are added one by one, `concurrency` at a time). Returns its id.
    pub async fn create_group(
        &self,
        owner_token: &str,
        title: &str,
        members: &[String],
        concurrency: usize,
    ) -> anyhow::Result<String> {
        let (first, rest) = members.split_at(members.len().min(MAX_INITIAL_MEMBERS));
        let created: Conversation = self
            .call(
                Method::POST,
                "/v1/conversations",
                owner_token,
                Some(&CreateConversation {
                    kind: ConversationKind::Group,
                    title: Some(title.to_owned()),
                    members: first.to_vec(),
                }),
            )
            .await?;
        let path = format!("/v1/conversations/{}/members", created.id);
        stream::iter(rest)
            .map(|user| {
                let body = AddMember {
                    user: user.clone(),
                    role: None,
                };
                let path = &path;
                async move {
                    self.call::<serde_json::Value>(Method::POST, path, owner_token, Some(&body))
                        .await
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<Vec<_>>()
            .await?;
        Ok(created.id)
    }

    /// The token's user's conversations.
    pub async fn conversations(&self, token: &str) -> anyhow::Result<ConversationList> {
        self.call(Method::GET, "/v1/conversations", token, None::<&()>)
            .await
    }

    /// One page of a conversation's messages.
    pub async fn page(
        &self,
        token: &str,
        conversation: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: u32,
    ) -> anyhow::Result<MessagePage> {
        let mut path = format!("/v1/conversations/{conversation}/messages?limit={limit}");
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.call(Method::GET, &path, token, None::<&()>).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!("GET /metrics: {}", response.status());
        }
        Ok(response.text().await?)
    }

    /// Waits until `/health` answers, for up to `timeout`.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let answer = self.http.get(format!("{}/health", self.base)).send().await;
            if matches!(&answer, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("server at {} not healthy: {answer:?}", self.base);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
