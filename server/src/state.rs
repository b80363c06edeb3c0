//! The application state shared by every handler and session.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use confab_protocol::ErrorCode;
use confab_protocol::frames::Limits;
use confab_storage::DynStore;

use crate::media::MediaService;
use crate::search::SearchService;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthUser, JwtKeys};
use crate::config::Config;
use crate::error::AppError;
use crate::hub::Hub;

pub(crate) type UserKey = (Arc<str>, Arc<str>);
pub(crate) type KeyedLimiter = RateLimiter<UserKey, DefaultKeyedStateStore<UserKey>, DefaultClock>;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: DynStore,
    /// Media and search, behind one `Arc`: every session holds the state, and its size is
    /// watched.
    pub services: Arc<Services>,
    pub hub: Arc<Hub>,
    pub keys: Arc<JwtKeys>,
    /// Per-user message limiter; `None` when the limit is off.
    limiter: Option<Arc<KeyedLimiter>>,
    /// Renders `/metrics`; `None` when no recorder could be installed (a second server in one
    /// process, as in some tests).
    pub metrics: Option<PrometheusHandle>,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Tracks WebSocket sessions, so shutdown can wait for them.
    pub sessions: TaskTracker,
}

/// What the REST API serves besides conversations: media files and search.
#[derive(Debug)]
pub struct Services {
    pub media: MediaService,
    pub search: Arc<SearchService>,
    /// When each user was last written to the directory of people (here rather than in
    /// `AppState`, which every session holds a copy of: its size is guarded).
    pub sightings: crate::people::Sightings,
}

impl AppState {
    /// Media files: their bytes, resumable uploads, signed links.
    pub fn media(&self) -> &MediaService {
        &self.services.media
    }

    /// The search index of this node.
    pub fn search(&self) -> &SearchService {
        &self.services.search
    }

    /// When each user was last written to the directory of people.
    pub fn sightings(&self) -> &crate::people::Sightings {
        &self.services.sightings
    }

    pub fn new(
        config: Config,
        store: DynStore,
        media: MediaService,
        search: Arc<SearchService>,
        hub: Arc<Hub>,
        keys: JwtKeys,
        metrics: Option<PrometheusHandle>,
    ) -> AppState {
        let limiter = NonZeroU32::new(config.message_rate_per_minute)
            .map(|per_minute| Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))));
        let services = Arc::new(Services {
            media,
            search,
            sightings: crate::people::Sightings::default(),
        });
        AppState {
            config: Arc::new(config),
            store,
            services,
            hub,
            keys: Arc::new(keys),
            limiter,
            metrics,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
        }
    }

    /// Takes one message from the user's budget, or refuses with `rate_limited`.
    pub fn check_message_rate(&self, user: &AuthUser) -> Result<(), AppError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let key = (user.tenant.clone(), user.user.clone());
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages per minute",
                    self.config.message_rate_per_minute
                ),
            )
            .with_retry_after(wait)
        })
    }

    /// Forgets idle users' limiter state now and then, so it does not grow without bound.
    pub fn spawn_limiter_cleanup(&self) {
        let Some(limiter) = self.limiter.clone() else {
            return;
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                }
            }
        });
    }

    /// The limits advertised in `welcome`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.config.max_frame_bytes,
            max_body_bytes: self.config.max_body_bytes,
            messages_per_minute: self.config.message_rate_per_minute,
            replay_cap: self.config.replay_cap,
        }
    }
}
