//! The session's user stream: the user's own events (see [`crate::hub::users`]), read from the
//! store after the last `user_seq` this connection sent. A nudge from the hub, a `user_resume`
//! and a fan-out resync all come here, so each event goes out once and in order whatever
//! triggered the read.

use confab_protocol::ServerFrame;
use confab_protocol::rest::{ConversationSummary, Role};
use confab_storage::{UserEvent, UserEventKind};
use futures_util::SinkExt;
use tracing::debug;
use tungstenite::Message;

use super::commands::Failure;
use super::{Exit, Session, Socket};
use crate::chat::encode;
use crate::error::{AppError, ErrorChain};
use crate::metrics::{self as m, WireStats};

/// User events read from the store at once.
const USER_PAGE: u32 = 100;

impl Session {
    /// Registers for the user's events and takes the user's last `user_seq` as the starting
    /// point (registered first: an event committed in between is then nudged, not missed).
    pub(super) async fn start_user_stream(&self) -> Result<(), AppError> {
        self.state
            .hub
            .register_user(&self.user.tenant, self.subscriber());
        let page = self
            .state
            .store
            .user_events(&self.user.tenant, &self.user.user, 0, 0)
            .await?;
        self.outbox.set_user_seq(page.last_seq);
        Ok(())
    }

    /// Sends every user event after the last one sent (the outbox's `user_seq`); with `reply` (the `ref` of a
    /// `user_resume`), then a `user_sync`. Returns how many frames were fed (not flushed).
    pub(super) async fn feed_user_events<S: Socket>(
        &mut self,
        socket: &mut S,
        reply: Option<Option<String>>,
    ) -> Result<usize, Failure> {
        let (tenant, user) = (self.user.tenant.clone(), self.user.user.clone());
        let store = self.state.store.clone();
        let mut fed = 0;
        loop {
            let page = store
                .user_events(&tenant, &user, self.outbox.user_seq(), USER_PAGE)
                .await
                .map_err(AppError::from)?;
            if page.resync {
                // Gone (or from another store): the client re-reads its conversation list.
                self.outbox.set_user_seq(page.last_seq);
                let sync = ServerFrame::UserSync {
                    reference: reply.flatten(),
                    user_seq: page.last_seq,
                    resync: true,
                };
                feed(socket, self.state.wire(), &sync).await?;
                return Ok(fed + 1);
            }
            let full = page.events.len() == USER_PAGE as usize;
            let summaries = self.summaries_for(&page.events).await?;
            for event in page.events {
                if event.user_seq <= self.outbox.user_seq() {
                    continue;
                }
                self.outbox.set_user_seq(event.user_seq);
                let frame = user_frame(event, &summaries);
                feed(socket, self.state.wire(), &frame).await?;
                fed += 1;
            }
            if !full {
                break;
            }
        }
        m::user_events_delivered(fed as u64);
        if let Some(reference) = reply {
            let sync = ServerFrame::UserSync {
                reference,
                user_seq: self.outbox.user_seq(),
                resync: false,
            };
            feed(socket, self.state.wire(), &sync).await?;
            fed += 1;
        }
        Ok(fed)
    }

    /// The live path: a nudge from the hub. A store failure is logged and the events wait for
    /// the next nudge or the client's `user_resume`.
    pub(super) async fn feed_user_nudge<S: Socket>(
        &mut self,
        socket: &mut S,
    ) -> Result<usize, Exit> {
        match self.feed_user_events(socket, None).await {
            Ok(fed) => Ok(fed),
            Err(Failure::Socket) => Err(Exit::SocketError),
            Err(Failure::App(err)) => {
                debug!(error = %ErrorChain(&err), "cannot read user events");
                Ok(0)
            }
        }
    }

    /// The summaries of the conversations `events` add (one list read, only when some do).
    async fn summaries_for(
        &self,
        events: &[UserEvent],
    ) -> Result<Vec<ConversationSummary>, AppError> {
        if !events
            .iter()
            .any(|event| event.kind == UserEventKind::ConversationAdded)
        {
            return Ok(Vec::new());
        }
        Ok(self
            .state
            .store
            .list_conversations(&self.user.tenant, &self.user.user)
            .await?)
    }
}

/// The wire frame of a user event.
fn user_frame(event: UserEvent, summaries: &[ConversationSummary]) -> ServerFrame {
    let UserEvent {
        user_seq,
        conversation,
        ts,
        ..
    } = event;
    let role = event.role.unwrap_or(Role::Member);
    match event.kind {
        UserEventKind::ConversationAdded => {
            let summary = summaries
                .iter()
                .find(|summary| summary.conversation.id == conversation)
                .cloned()
                .map(Box::new);
            ServerFrame::ConversationAdded {
                user_seq,
                conversation,
                role,
                summary,
                ts,
            }
        }
        UserEventKind::ConversationRemoved => ServerFrame::ConversationRemoved {
            user_seq,
            conversation,
            ts,
        },
        UserEventKind::RoleChanged => ServerFrame::RoleChanged {
            user_seq,
            conversation,
            role,
            ts,
        },
        UserEventKind::ReadMoved => ServerFrame::ReadMoved {
            user_seq,
            conversation,
            read_seq: event.read_seq.unwrap_or(0),
            ts,
        },
    }
}

async fn feed<S: Socket>(
    socket: &mut S,
    wire: &WireStats,
    frame: &ServerFrame,
) -> Result<(), Failure> {
    let text = encode(frame)?;
    wire.sent(1, text.len() as u64);
    socket
        .feed(Message::Text(text))
        .await
        .map_err(|_| Failure::Socket)
}
