//! The conformance suite every [`Store`](crate::Store) backend must pass, in the manner of
//! quickwit's `metastore_test_suite!`.
//!
//! A backend's integration test invokes [`store_conformance_suite!`](crate::store_conformance_suite)
//! with an async factory returning `(DynStore, Arc<RecordingSink>, Guard)`: a fresh, empty store,
//! the sink it publishes to, and whatever must outlive the store (a temporary directory, a
//! database name). The macro expands to one `#[tokio::test]` per check below.
//!
//! ```text
//! async fn factory() -> (DynStore, Arc<RecordingSink>, tempfile::TempDir) { ... }
//! async fn reopen(dir: &tempfile::TempDir) -> (DynStore, Arc<RecordingSink>) { ... }
//!
//! confab_storage::store_conformance_suite!(factory);
//! // or, for a persistent backend, with the durability check as well:
//! confab_storage::store_conformance_suite!(factory, reopen = reopen);
//! ```
//!
//! The checks are plain `pub async fn`s of this module, so a backend may also call one directly.
//! They panic on failure, like any test.
//!
//! Compiled only for this crate's unit tests and with the cargo feature `conformance`, which
//! this crate's own dev-dependencies turn on for its integration tests (as should those of any
//! crate that runs the suite): none of it is in a production build.

#![allow(
    clippy::too_many_lines,
    reason = "test code: each check is one scenario, read best in one piece"
)]

use std::sync::{Arc, Mutex, PoisonError};

use confab_protocol::ServerFrame;
use confab_protocol::rest::{Conversation, ConversationKind};

use crate::{Appended, DynStore, EventSink, NewConversation, NewMessage, StoredEvent};

/// Asserts that a store call failed with the given `StoreError` pattern.
macro_rules! expect_err {
    ($call:expr, $pattern:pat) => {
        match $call {
            Err($pattern) => {}
            other => panic!(
                "{} returned {other:?}, expected Err({})",
                stringify!($call),
                stringify!($pattern)
            ),
        }
    };
}

mod access;
mod conversations;
pub mod legacy;
mod lifecycle;
pub mod media;
mod media_files;
mod members;
mod messages;
mod people;
mod recent_queries;
mod user_events;

pub use access::{non_member_is_rejected, tenant_isolation};
pub use conversations::{
    create_direct_conversation_once, create_group_conversation,
    list_conversations_unread_and_order, mark_read_moves_forward, update_and_archive,
};
pub use lifecycle::{
    Written, check_after_reopen, close_refuses_writes, events_replay_every_kind,
    replay_matches_what_was_published, write_then_close,
};
pub use media_files::{
    media_attachment_rules, media_delete_rules, media_files_are_seen_by_their_conversation,
    media_quota_usage_and_downloads,
};
pub use members::{direct_members_are_fixed, member_rules, role_rules};
pub use messages::{
    concurrent_appends_are_gapless, delete_rules, delete_scrubs_replayed_content, edit_rules,
    events_after_every_limit, paging_before_and_after, reactions_are_idempotent_and_aggregated,
    reply_to_must_be_in_conversation, send_is_idempotent,
};
pub use people::{people_directory, people_in_batches};
pub use recent_queries::recent_queries_are_per_user_and_bounded;
pub use user_events::{user_events_are_retained_up_to_a_bound, user_events_follow_membership};

/// Expands to one `#[tokio::test]` per conformance check, each on a fresh store from `$factory`
/// (an `async fn() -> (DynStore, Arc<RecordingSink>, Guard)`). With `reopen = $reopen` (an
/// `async fn(&Guard) -> (DynStore, Arc<RecordingSink>)` reopening the same data), it also checks
/// that `close` drains and that acknowledged writes survive a reopen.
#[macro_export]
macro_rules! store_conformance_suite {
    ($factory:path) => {
        $crate::store_conformance_suite!(@checks $factory;
            create_group_conversation,
            create_direct_conversation_once,
            tenant_isolation,
            non_member_is_rejected,
            update_and_archive,
            mark_read_moves_forward,
            list_conversations_unread_and_order,
            member_rules,
            role_rules,
            direct_members_are_fixed,
            send_is_idempotent,
            concurrent_appends_are_gapless,
            reply_to_must_be_in_conversation,
            edit_rules,
            delete_rules,
            delete_scrubs_replayed_content,
            reactions_are_idempotent_and_aggregated,
            paging_before_and_after,
            events_after_every_limit,
            events_replay_every_kind,
            replay_matches_what_was_published,
            close_refuses_writes,
            media_files_are_seen_by_their_conversation,
            media_delete_rules,
            media_attachment_rules,
            media_quota_usage_and_downloads,
            people_directory,
            people_in_batches,
            recent_queries_are_per_user_and_bounded,
            user_events_follow_membership,
            user_events_are_retained_up_to_a_bound,
        );
    };
    ($factory:path, reopen = $reopen:path) => {
        $crate::store_conformance_suite!($factory);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn acknowledged_writes_survive_close_and_reopen() {
            let (store, sink, guard) = $factory().await;
            let written = $crate::conformance::write_then_close(store, sink).await;
            let (store, sink) = $reopen(&guard).await;
            $crate::conformance::check_after_reopen(store, sink, written).await;
            drop(guard);
        }
    };
    (@checks $factory:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, sink, guard) = $factory().await;
                $crate::conformance::$check(store, sink).await;
                drop(guard);
            }
        )*
    };
}

/// An [`EventSink`] that keeps everything published, for tests.
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<StoredEvent>>,
}

impl RecordingSink {
    /// An empty sink, shared.
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }

    /// Everything published so far, in publication order.
    pub fn events(&self) -> Vec<StoredEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What was published for one conversation, in publication order.
    pub fn events_of(&self, conversation: &str) -> Vec<StoredEvent> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events
            .iter()
            .filter(|event| event.conversation == conversation)
            .cloned()
            .collect()
    }
}

impl EventSink for RecordingSink {
    fn publish(&self, events: Vec<StoredEvent>) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(events);
    }
}

/// The tenant the checks work in.
const TENANT: &str = "acme";
/// A second tenant, which must see nothing of the first.
const OTHER_TENANT: &str = "globex";

/// Creates a group of `TENANT` owned by `creator`.
async fn group(store: &DynStore, creator: &str, members: &[&str]) -> Conversation {
    let new = NewConversation {
        tenant: TENANT.to_owned(),
        creator: creator.to_owned(),
        kind: ConversationKind::Group,
        title: Some(format!("{creator}'s group")),
        members: members.iter().map(|member| (*member).to_owned()).collect(),
    };
    let (conversation, created) = store.create_conversation(new).await.expect("create group");
    assert!(created);
    conversation
}

/// A message of `TENANT` with a fresh `client_msg_id`.
fn new_message(conversation: &str, author: &str, body: &str) -> NewMessage {
    NewMessage {
        tenant: TENANT.to_owned(),
        conversation: conversation.to_owned(),
        author: author.to_owned(),
        client_msg_id: uuid::Uuid::new_v4().simple().to_string(),
        body: body.to_owned(),
        reply_to: None,
        attachments: Vec::new(),
        repeat_only: false,
    }
}

/// A message of the suite's tenant (`acme`) with a given `client_msg_id`, for a backend's own
/// tests.
pub fn keyed_message(conversation: &str, author: &str, client_msg_id: &str) -> NewMessage {
    NewMessage {
        client_msg_id: client_msg_id.to_owned(),
        body: format!("{author} says {client_msg_id}"),
        ..new_message(conversation, author, "")
    }
}

/// Sends a message and expects it to be new.
async fn send(store: &DynStore, conversation: &str, author: &str, body: &str) -> Appended {
    let appended = store
        .append_message(new_message(conversation, author, body))
        .await
        .expect("append message");
    assert!(!appended.duplicate);
    appended
}

/// An event's frame as the server renders it, parsed back.
fn frame_of(event: &StoredEvent) -> ServerFrame {
    let text = event.render().expect("the event renders");
    let frame: ServerFrame = serde_json::from_str(&text).expect("the frame parses");
    assert_eq!(
        frame.durable_position(),
        Some((event.conversation.as_str(), event.seq)),
        "the frame carries the event's position"
    );
    frame
}

/// The last event published for `conversation`, parsed, checked against `seq`.
fn last_published(
    sink: &RecordingSink,
    conversation: &str,
    seq: u64,
) -> (StoredEvent, ServerFrame) {
    let event = sink
        .events_of(conversation)
        .pop()
        .expect("an event was published");
    assert_eq!(event.seq, seq, "the last published event is the write's");
    let frame = frame_of(&event);
    (event, frame)
}
