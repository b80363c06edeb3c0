//! The session's write side: queued items go out in batches with one flush, only for joined
//! conversations, each durable event once and in seq order. A hole in the seq stream (an event
//! lost between nodes, or a resync after a fan-out outage) is filled from storage before the
//! next event goes out, so a client never sees a gap.

use std::pin::Pin;
use std::sync::Arc;

use confab_protocol::EventKind;
use confab_storage::StoreError;
use futures_util::SinkExt;
use tracing::debug;
use tungstenite::{Message, Utf8Bytes};

use super::{Exit, Session, Socket, WRITE_BATCH, close_code};
use crate::chat::encode_event;
use crate::error::ErrorChain;
use crate::hub::{Delivered, Outbound};

/// What to do with one queued item.
enum Admit {
    Send(Utf8Bytes),
    Skip,
    /// A durable event past a hole: fill the hole first.
    Gap(Arc<Delivered>),
    /// Catch up on a conversation from storage.
    Resync(Arc<str>),
    /// Read the user's new user events from storage.
    User,
}

impl Session {
    /// Writes what is queued (up to a batch), then flushes once.
    ///
    /// The socket is made ready before each item is taken from the outbox and admitted, and
    /// the frame then handed over without waiting: no item or frame is held across an await,
    /// which keeps this future (part of every idle connection's task) small. The rare paths
    /// are boxed for the same reason ([`write_rare`](Self::write_rare)). A plain `fn`
    /// returning an `async move` block: an `async fn` keeps its arguments twice (40 bytes).
    #[allow(clippy::manual_async_fn)]
    pub(super) fn write_queued<'a, S: Socket>(
        &'a mut self,
        socket: &'a mut S,
    ) -> impl Future<Output = Result<(), Exit>> + 'a {
        async move {
            let mut pending = 0usize;
            // Frames and bytes of the fast path, counted once per batch (the rare paths count
            // their own).
            let (mut sent, mut bytes) = (0u32, 0u64);
            while pending < WRITE_BATCH {
                ready(socket).await?;
                let Some(item) = self.outbox.try_pop() else {
                    break;
                };
                match self.admit(item) {
                    Admit::Send(text) => {
                        bytes += text.len() as u64;
                        sent += 1;
                        start_send(socket, text)?;
                        pending += 1;
                    }
                    Admit::Skip => {}
                    rare => pending += self.write_rare(socket, rare).await?,
                }
            }
            self.state.wire().sent(u64::from(sent), bytes);
            // Answers that came meanwhile go out with the same flush: a sender's ack and the
            // echo of its message are usually ready together (one system call rather than two).
            while !self.acks.is_empty() {
                ready(socket).await?;
                match self.next_ack() {
                    Ok(Some(text)) => {
                        start_send(socket, text)?;
                        pending += 1;
                    }
                    Ok(None) => break,
                    Err(()) => return Err(Exit::SocketError),
                }
            }
            if pending > 0 {
                socket.flush().await.map_err(|_| Exit::SocketError)?;
            }
            Ok(())
        }
    }

    /// Feeds an admitted item the slow way, in a box of its own size: [`write_queued`]
    /// takes only a gap to fill, a resync or the user's events here (one allocation per such
    /// item, as before), and hands it the `Admit` whole: moving a part out of it would keep
    /// the `Admit` (40 bytes) in the write's state across the await. Returns how many frames
    /// were fed.
    ///
    /// [`write_queued`]: Self::write_queued
    fn write_rare<'a, S: Socket + 'a>(
        &'a mut self,
        socket: &'a mut S,
        admit: Admit,
    ) -> Pin<Box<dyn Future<Output = Result<usize, Exit>> + Send + 'a>> {
        match admit {
            Admit::Gap(event) => Box::pin(self.fill_gap(socket, event)),
            Admit::Resync(conversation) => {
                Box::pin(async move { self.fill(socket, &conversation, None).await })
            }
            Admit::User => Box::pin(self.feed_user_nudge(socket)),
            Admit::Send(text) => Box::pin(async move {
                self.state.wire().sent(1, text.len() as u64);
                feed(socket, text).await.map(|()| 1)
            }),
            Admit::Skip => Box::pin(std::future::ready(Ok(0))),
        }
    }

    /// A durable event past a hole: fills the hole from storage, then feeds the event.
    async fn fill_gap<S: Socket>(
        &mut self,
        socket: &mut S,
        event: Arc<Delivered>,
    ) -> Result<usize, Exit> {
        let mut fed = self
            .fill(socket, &event.conversation, Some(event.seq))
            .await?;
        if let Admit::Send(text) = self.admit(Outbound::Event(event)) {
            self.state.wire().sent(1, text.len() as u64);
            feed(socket, text).await?;
            fed += 1;
        }
        Ok(fed)
    }

    fn admit(&mut self, item: Outbound) -> Admit {
        match item {
            Outbound::Ephemeral(frame) if self.joined.contains_key(&frame.conversation) => {
                Admit::Send(frame.text.clone())
            }
            Outbound::Resync(conversation) if self.joined.contains_key(&conversation) => {
                Admit::Resync(conversation)
            }
            Outbound::Ephemeral(_) | Outbound::Resync(_) => Admit::Skip,
            Outbound::User => Admit::User,
            Outbound::Event(event) => {
                let Some(joined) = self.joined.get_mut(&event.conversation) else {
                    return Admit::Skip;
                };
                if event.seq <= joined.last_seq {
                    return Admit::Skip;
                }
                if event.seq > joined.last_seq + 1 {
                    return Admit::Gap(event);
                }
                joined.last_seq = event.seq;
                if let Some(committed) = event.committed {
                    self.state.wire().delivered_after(committed.elapsed());
                }
                let text = event.text.clone();
                self.note_removal(&event.conversation, event.kind, event.subject.as_deref());
                Admit::Send(text)
            }
        }
    }

    /// A `member_removed` about this user ends its subscription to the conversation.
    fn note_removal(&mut self, conversation: &str, kind: EventKind, subject: Option<&str>) {
        if kind == EventKind::MemberRemoved && subject == Some(&*self.user.user) {
            self.joined.remove(conversation);
            let tenant = &self.user.tenant;
            self.state
                .hub
                .unsubscribe(tenant, conversation, &self.outbox);
        }
    }

    /// Sends the stored events after the conversation's last delivered seq, up to (excluding)
    /// `until`, or all of them. Returns how many frames were fed. A hole wider than the replay
    /// cap ends the session with "resume required"; losing membership ends the subscription.
    async fn fill<S: Socket>(
        &mut self,
        socket: &mut S,
        conversation: &Arc<str>,
        until: Option<u64>,
    ) -> Result<usize, Exit> {
        let Some(after) = self.joined.get(conversation).map(|j| j.last_seq) else {
            return Ok(0);
        };
        let cap = self.state.config.replay_cap;
        let wanted = match until {
            Some(until) => u32::try_from(until.saturating_sub(after + 1)).unwrap_or(u32::MAX),
            None => cap.saturating_add(1),
        };
        if wanted == 0 {
            return Ok(0);
        }
        if until.is_some() && wanted > cap {
            return Err(resume_required());
        }
        let (tenant, user) = (self.user.tenant.clone(), self.user.user.clone());
        let fetched = self
            .state
            .store
            .events_after(&tenant, &user, conversation, after, wanted)
            .await;
        let events = match fetched {
            Ok((events, _)) => events,
            Err(StoreError::NotMember | StoreError::NotFound(_)) => {
                self.joined.remove(conversation);
                let tenant = &self.user.tenant;
                self.state
                    .hub
                    .unsubscribe(tenant, conversation, &self.outbox);
                return Ok(0);
            }
            Err(err) => {
                debug!(error = %ErrorChain(&err), "cannot fill a gap from storage");
                return Err(resume_required());
            }
        };
        if until.is_none() && events.len() > cap as usize {
            return Err(resume_required());
        }
        let mut fed = 0;
        for event in events {
            let Some(joined) = self.joined.get_mut(conversation) else {
                break;
            };
            if event.seq <= joined.last_seq {
                continue;
            }
            joined.last_seq = event.seq;
            self.note_removal(conversation, event.kind(), event.subject());
            let text = encode_event(&event).map_err(|err| {
                debug!(error = %err, "cannot render a stored event");
                resume_required()
            })?;
            self.state.wire().sent(1, text.len() as u64);
            feed(socket, text).await?;
            fed += 1;
        }
        Ok(fed)
    }
}

fn resume_required() -> Exit {
    Exit::Closed {
        code: close_code::RESUME_REQUIRED,
        reason: "too far behind: reconnect and resume with since",
    }
}

/// Waits until the socket takes a frame (at once, unless its buffer is full and the client
/// is not reading).
/// The `poll_fn` itself rather than an `async fn` around it: 8 bytes of the write's state, not
/// 24.
fn ready<S: Socket>(socket: &mut S) -> impl Future<Output = Result<(), Exit>> + '_ {
    std::future::poll_fn(|cx| socket.poll_ready_unpin(cx).map_err(|_| Exit::SocketError))
}

/// Hands a frame to a socket made [`ready`].
fn start_send<S: Socket>(socket: &mut S, text: Utf8Bytes) -> Result<(), Exit> {
    socket
        .start_send_unpin(Message::Text(text))
        .map_err(|_| Exit::SocketError)
}

async fn feed<S: Socket>(socket: &mut S, text: Utf8Bytes) -> Result<(), Exit> {
    socket
        .feed(Message::Text(text))
        .await
        .map_err(|_| Exit::SocketError)
}
