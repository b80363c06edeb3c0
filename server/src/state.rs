//! The application state shared by every handler and session.

use std::sync::Arc;
use std::time::Duration;

use confab_protocol::frames::Limits;
use confab_storage::DynStore;

use crate::media::MediaService;
use crate::search::SearchService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthUser, JwtKeys};
use crate::config::Config;
use crate::error::AppError;
use crate::hub::Hub;

/// Everything a handler needs; cheap to clone. One `Arc` around the fields: every session
/// holds a copy, 8 bytes where the fields themselves are 72 (issue 17).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`], reached through it.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: DynStore,
    /// Media and search, behind one `Arc`: every session holds the state, and its size is
    /// watched.
    pub services: Arc<Services>,
    pub hub: Arc<Hub>,
    pub keys: Arc<JwtKeys>,
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
    /// One record per user: when they were last written to the directory of people, their
    /// open connections and their sessions here; the hub's (here rather than in `AppState`,
    /// which every session holds a copy of: its size is guarded).
    pub people: Arc<crate::people::People>,
    /// Per-user rate limits and caps.
    pub limits: crate::limits::UserLimits,
    /// Frames and bytes of the sessions' sockets, and the fan-out latency.
    pub wire: crate::metrics::WireStats,
    /// Every session's heartbeat, on one timer.
    pub heartbeats: Arc<crate::heartbeat::Heartbeats>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
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

    /// Frames and bytes of the sessions' sockets, and the fan-out latency.
    pub fn wire(&self) -> &crate::metrics::WireStats {
        &self.services.wire
    }

    /// Every user seen: when they were last written to the directory of people.
    pub fn people(&self) -> &crate::people::People {
        &self.services.people
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
        let shutdown = CancellationToken::new();
        let people = hub.people().clone();
        let services = Arc::new(Services {
            media,
            search,
            limits: crate::limits::UserLimits::new(&config, people.clone()),
            people,
            wire: crate::metrics::WireStats::new(),
            heartbeats: Arc::new(crate::heartbeat::Heartbeats::new(
                config.heartbeat,
                shutdown.clone(),
            )),
        });
        AppState(Arc::new(Shared {
            config: Arc::new(config),
            store,
            services,
            hub,
            keys: Arc::new(keys),
            metrics,
            shutdown,
            sessions: TaskTracker::new(),
        }))
    }

    /// Per-user rate limits and caps.
    pub fn user_limits(&self) -> &crate::limits::UserLimits {
        &self.services.limits
    }

    /// Takes one message from the user's budget, or refuses with `rate_limited`.
    pub fn check_message_rate(&self, user: &AuthUser) -> Result<(), AppError> {
        self.services.limits.messages.check(user)
    }

    /// Forgets idle users' limiter state now and then, so it does not grow without bound.
    pub fn spawn_limiter_cleanup(&self) {
        let services = self.services.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        services.limits.forget_idle();
                        services.search.forget_idle();
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
