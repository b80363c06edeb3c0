//! Sends in flight on one connection.
//!
//! A `send` is validated and queued in the store at once ([`chat::queue_send`]), and the
//! session goes on reading: up to [`MAX_IN_FLIGHT`] sends per connection wait for their commit
//! together, so one connection is not held to one message per commit. Sends queued one after
//! another take seqs in that order, and their acks (or errors) are written in that order too:
//! only the oldest is ever polled. Any other command first waits for every send before it.
//!
//! [`chat::queue_send`]: crate::chat::queue_send

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use confab_protocol::ServerFrame;
use confab_storage::{Appended, PendingAppend};

use crate::error::AppError;
use crate::metrics as m;

/// Sends one connection may have waiting for their commit; past it the session stops reading
/// the socket until the oldest is acknowledged (backpressure).
pub(super) const MAX_IN_FLIGHT: usize = 32;

/// One send waiting for its answer.
pub(super) struct PendingAck {
    reference: Option<String>,
    conversation: String,
    client_msg_id: String,
    started: Instant,
    /// The store's answer to come; `None` once polled to completion (or never queued).
    append: Option<PendingAppend>,
    /// The outcome, once known.
    outcome: Option<Result<Appended, AppError>>,
}

impl PendingAck {
    /// A send the store has queued.
    pub(super) fn queued(
        reference: Option<String>,
        conversation: String,
        client_msg_id: String,
        started: Instant,
        append: PendingAppend,
    ) -> PendingAck {
        PendingAck {
            reference,
            conversation,
            client_msg_id,
            started,
            append: Some(append),
            outcome: None,
        }
    }

    /// A send refused before it reached the store, answered in its turn.
    pub(super) fn refused(reference: Option<String>, err: AppError) -> PendingAck {
        PendingAck {
            reference,
            conversation: String::new(),
            client_msg_id: String::new(),
            started: Instant::now(),
            append: None,
            outcome: Some(Err(err)),
        }
    }

    /// Polls the store's answer, once; `Ready` when the outcome is known.
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.outcome.is_none() {
            let Some(append) = self.append.as_mut() else {
                self.outcome = Some(Err(AppError::internal("a send lost its append")));
                return Poll::Ready(());
            };
            let Poll::Ready(appended) = append.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            self.append = None;
            self.outcome = Some(appended.map_err(AppError::from));
        }
        Poll::Ready(())
    }
}

/// The answer to a send: its `ack`, or the error to send back with the send's `ref`.
pub(super) type Settled = Result<ServerFrame, (Option<String>, AppError)>;

/// The sends in flight, oldest first. One pointer in the session until the first send (most
/// connections only listen, and every byte of the session is kept per idle connection).
#[derive(Default)]
pub(super) struct Acks {
    // Boxed on purpose: 8 bytes in the session instead of the deque's 32 (see the session's
    // size test).
    #[allow(clippy::box_collection)]
    pending: Option<Box<VecDeque<PendingAck>>>,
}

impl Acks {
    pub(super) fn push(&mut self, ack: PendingAck) {
        self.pending.get_or_insert_default().push_back(ack);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending
            .as_ref()
            .is_none_or(|pending| pending.is_empty())
    }

    /// Whether the session may read another frame.
    pub(super) fn has_room(&self) -> bool {
        self.pending
            .as_ref()
            .is_none_or(|pending| pending.len() < MAX_IN_FLIGHT)
    }

    /// Resolves once the oldest send has its answer (never, while there is none); take it with
    /// [`take_ready`](Self::take_ready). Its output is `()` so that the session loop's future,
    /// which every idle connection keeps, holds no room for a frame.
    pub(super) fn ready(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(
            |cx| match self.pending.as_mut().and_then(|p| p.front_mut()) {
                Some(front) => front.poll_outcome(cx),
                None => Poll::Pending,
            },
        )
    }

    /// The oldest send's answer, if it has one now.
    pub(super) fn take_ready(&mut self) -> Option<Settled> {
        let pending = self.pending.as_mut()?;
        let front = pending.front_mut()?;
        if front
            .poll_outcome(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            return None;
        }
        let mut done = pending.pop_front()?;
        let outcome = done.outcome.take()?;
        Some(settle(done, outcome))
    }

    /// The oldest send's answer, waiting for it (forever, while there is none).
    #[cfg(test)]
    async fn next(&mut self) -> Settled {
        loop {
            self.ready().await;
            if let Some(settled) = self.take_ready() {
                return settled;
            }
        }
    }
}

fn settle(done: PendingAck, outcome: Result<Appended, AppError>) -> Settled {
    let appended = outcome.map_err(|err| (done.reference.clone(), err))?;
    m::ack_latency(done.started.elapsed());
    Ok(ServerFrame::Ack {
        reference: done.reference,
        conversation: done.conversation,
        client_msg_id: done.client_msg_id,
        id: appended.id,
        seq: appended.seq,
        ts: appended.ts,
        duplicate: appended.duplicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::sync::oneshot;

    fn appended(seq: u64) -> Appended {
        Appended {
            id: format!("m{seq}"),
            seq,
            ts: 0,
            duplicate: false,
        }
    }

    fn queued(
        n: u64,
    ) -> (
        PendingAck,
        oneshot::Sender<confab_storage::Result<Appended>>,
    ) {
        let (answer, outcome) = oneshot::channel();
        let append: PendingAppend = Box::pin(async move {
            outcome
                .await
                .unwrap_or(Err(confab_storage::StoreError::Unavailable))
        });
        let ack = PendingAck::queued(
            Some(format!("r{n}")),
            "c1".to_owned(),
            format!("x{n}"),
            Instant::now(),
            append,
        );
        (ack, answer)
    }

    fn seq_of(settled: Settled) -> u64 {
        match settled {
            Ok(ServerFrame::Ack { seq, .. }) => seq,
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    #[test]
    fn answers_come_out_in_the_order_the_sends_went_in() {
        let mut acks = Acks::default();
        assert!(acks.next().now_or_never().is_none(), "nothing in flight");
        let (first, first_answer) = queued(1);
        let (second, second_answer) = queued(2);
        acks.push(first);
        acks.push(PendingAck::refused(
            Some("bad".to_owned()),
            AppError::invalid("body is empty"),
        ));
        acks.push(second);

        // The last one commits first: nothing is answered before the first.
        second_answer.send(Ok(appended(2))).expect("send");
        assert!(acks.next().now_or_never().is_none());
        first_answer.send(Ok(appended(1))).expect("send");
        assert_eq!(seq_of(acks.next().now_or_never().expect("first")), 1);
        match acks.next().now_or_never().expect("the refusal") {
            Err((reference, err)) => {
                assert_eq!(reference.as_deref(), Some("bad"));
                assert_eq!(err.message, "body is empty");
            }
            other => panic!("expected the refusal, got {other:?}"),
        }
        assert_eq!(seq_of(acks.next().now_or_never().expect("second")), 2);
        assert!(acks.is_empty());
    }

    #[test]
    fn a_failed_append_is_answered_with_its_error() {
        let mut acks = Acks::default();
        let (ack, answer) = queued(1);
        acks.push(ack);
        answer
            .send(Err(confab_storage::StoreError::NotMember))
            .expect("send");
        match acks.next().now_or_never().expect("answered") {
            Err((reference, err)) => {
                assert_eq!(reference.as_deref(), Some("r1"));
                assert_eq!(err.code, confab_protocol::ErrorCode::NotMember);
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn room_runs_out_at_the_cap() {
        let mut acks = Acks::default();
        let mut answers = Vec::new();
        for n in 0..MAX_IN_FLIGHT as u64 {
            assert!(acks.has_room());
            let (ack, answer) = queued(n);
            acks.push(ack);
            answers.push(answer);
        }
        assert!(!acks.has_room());
        let first = answers.remove(0);
        first.send(Ok(appended(0))).expect("send");
        acks.next().now_or_never().expect("answered").ok();
        assert!(acks.has_room());
    }
}
