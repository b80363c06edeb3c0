//! Where a decided batch is published and answered: on one task of the async runtime the
//! store was opened in, or (without a runtime) on the writer thread itself.
//!
//! Why a task: publishing fans a commit's events out to the sessions' outboxes and answering
//! completes its callers' futures, and every one of those wakes a task. Woken from a thread
//! outside the runtime, a task goes to the runtime's shared queue and may unpark a worker, one
//! wake-up each, and the sender's session often ran for its echo before the writer answered
//! it (two wake-ups, two socket writes). The writer thread now wakes one task per batch; its
//! wakes, issued from a worker, go to that worker's own queue, and a sender's echo and ack are
//! both ready before its session runs.
//!
//! Order: batches go to the task in commit order over one channel and the task handles them in
//! that order, publishing each batch's events before answering its jobs, as the thread did.
//! Backpressure: the channel is bounded ([`DECIDED_QUEUE`] batches); when the task falls
//! behind, the writer thread waits before its next batch, so its own queue fills and callers
//! wait in turn.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::job::BoxedJob;
use crate::{EventSink, StoredEvent};

/// Decided batches that may wait for the delivery task before the writer thread waits.
pub(super) const DECIDED_QUEUE: usize = 64;

/// Batches taken off the channel at once.
const TAKE: usize = 16;

/// A batch whose fate is known: its events (committed, in commit order) and its jobs with the
/// batch's outcome.
pub(super) struct Decided {
    pub(super) events: Vec<StoredEvent>,
    pub(super) jobs: Vec<BoxedJob>,
    pub(super) outcome: Result<(), Arc<rusqlite::Error>>,
}

impl Decided {
    /// Publishes the events (only those of a committed batch are ever here), then answers the
    /// jobs in their order.
    fn deliver(self, sink: &dyn EventSink) {
        if !self.events.is_empty() {
            publish(sink, self.events);
        }
        let outcome = self.outcome.as_ref().map(|_| ());
        for job in self.jobs {
            job.answer(outcome);
        }
    }
}

/// How the writer thread hands over decided batches.
pub(super) struct Courier {
    sink: Arc<dyn EventSink>,
    /// `None` without a runtime, or once the task has gone (its runtime shut down).
    task: Option<mpsc::Sender<Decided>>,
}

impl Courier {
    /// Starts the delivery task on the current runtime, if there is one; returns the courier
    /// for the writer thread and the task's handle.
    pub(super) fn start(sink: Arc<dyn EventSink>) -> (Courier, Option<JoinHandle<()>>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return (Courier { sink, task: None }, None);
        };
        let (sender, receiver) = mpsc::channel(DECIDED_QUEUE);
        let handle = runtime.spawn(run(sink.clone(), receiver));
        let courier = Courier {
            sink,
            task: Some(sender),
        };
        (courier, Some(handle))
    }

    /// Hands a decided batch to the task, waiting while its queue is full; delivers it here
    /// when there is no task (or it has gone with its runtime).
    pub(super) fn hand_over(&mut self, decided: Decided) {
        let Some(task) = &self.task else {
            decided.deliver(self.sink.as_ref());
            return;
        };
        if let Err(mpsc::error::SendError(decided)) = task.blocking_send(decided) {
            tracing::debug!("the delivery task has gone; delivering on the writer thread");
            self.task = None;
            decided.deliver(self.sink.as_ref());
        }
    }
}

/// The delivery task: until the writer thread drops its sender.
async fn run(sink: Arc<dyn EventSink>, mut decided: mpsc::Receiver<Decided>) {
    let mut batches = Vec::with_capacity(TAKE);
    while decided.recv_many(&mut batches, TAKE).await > 0 {
        for batch in batches.drain(..) {
            batch.deliver(sink.as_ref());
        }
    }
}

/// Hands committed events to the sink; a panicking sink must not stop the delivery.
fn publish(sink: &dyn EventSink, events: Vec<StoredEvent>) {
    if panic::catch_unwind(AssertUnwindSafe(|| sink.publish(events))).is_err() {
        tracing::error!("event sink panicked; committed events were not all published");
    }
}
