//! Checks on media files' metadata: who sees and deletes a file, the quota, downloads.

use std::sync::Arc;

use confab_protocol::rest::Role;

use super::{OTHER_TENANT, RecordingSink, TENANT, group};
use crate::{DynStore, NewMediaFile, StoreError};

fn new_file(id: &str, uploader: &str, conversation: Option<&str>, size: u64) -> NewMediaFile {
    NewMediaFile {
        tenant: TENANT.to_owned(),
        id: id.to_owned(),
        uploader: uploader.to_owned(),
        name: format!("{id}.png"),
        content_type: "image/png".to_owned(),
        size,
        sha256: "ab".repeat(32),
        conversation: conversation.map(str::to_owned),
        quota: None,
    }
}

/// An unattached file is its uploader's alone; a conversation's file is its members' (only
/// while they are members); another tenant sees neither.
pub async fn media_files_are_seen_by_their_conversation(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "alice", &["bob"]).await;
    let c = conversation.id.as_str();
    let events_before = sink.events().len();
    let own = store
        .create_media(new_file("own", "alice", None, 10))
        .await
        .expect("create");
    assert_eq!(own.conversations, Vec::<String>::new());
    assert_eq!(
        (own.size, own.downloads, own.uploader.as_str()),
        (10, 0, "alice")
    );
    let shared = store
        .create_media(new_file("shared", "alice", Some(c), 20))
        .await
        .expect("create in conversation");
    assert_eq!(shared.conversations, [c]);
    assert_eq!(sink.events().len(), events_before, "files take no seq");

    assert_eq!(store.media(TENANT, "alice", "own").await.expect("own"), own);
    assert_eq!(
        store.media_file(TENANT, "own").await.expect("unchecked"),
        own
    );
    let positions = store.conversation_positions().await.expect("positions");
    assert!(
        positions.contains(&(TENANT.to_owned(), c.to_owned(), conversation.last_seq)),
        "{positions:?}"
    );
    expect_err!(
        store.media_file(OTHER_TENANT, "own").await,
        StoreError::NotFound("media")
    );
    expect_err!(
        store.media(TENANT, "bob", "own").await,
        StoreError::NotFound("media")
    );
    assert_eq!(
        store.media(TENANT, "bob", "shared").await.expect("member"),
        shared
    );
    expect_err!(
        store.media(TENANT, "eve", "shared").await,
        StoreError::NotFound("media")
    );
    expect_err!(
        store.media(OTHER_TENANT, "alice", "shared").await,
        StoreError::NotFound("media")
    );
    expect_err!(
        store.media(TENANT, "alice", "nope").await,
        StoreError::NotFound("media")
    );

    // A removed member loses the file; the uploader keeps it even after leaving.
    store
        .remove_member(TENANT, "alice", c, "bob")
        .await
        .expect("remove");
    expect_err!(
        store.media(TENANT, "bob", "shared").await,
        StoreError::NotFound("media")
    );
    store
        .add_member(TENANT, "alice", c, "bob", Role::Owner)
        .await
        .expect("re-add");
    store
        .remove_member(TENANT, "alice", c, "alice")
        .await
        .expect("leave");
    assert_eq!(
        store
            .media(TENANT, "alice", "shared")
            .await
            .expect("uploader")
            .id,
        "shared"
    );

    // Uploading into a conversation needs its membership, and its tenant.
    expect_err!(
        store.create_media(new_file("x", "eve", Some(c), 1)).await,
        StoreError::NotMember
    );
    let mut foreign = new_file("y", "alice", Some(c), 1);
    foreign.tenant = OTHER_TENANT.to_owned();
    expect_err!(store.create_media(foreign).await, StoreError::NotFound(_));
    expect_err!(
        store.create_media(new_file("own", "alice", None, 1)).await,
        StoreError::Conflict(_)
    );
}

/// The uploader and a conversation's owners and admins delete a file; members may not; the
/// file is then gone for everyone.
pub async fn media_delete_rules(store: DynStore, _sink: Arc<RecordingSink>) {
    let conversation = group(&store, "alice", &["bob", "carol"]).await;
    let c = conversation.id.as_str();
    store
        .set_role(TENANT, "alice", c, "carol", Role::Admin)
        .await
        .expect("admin");
    for id in ["a", "b", "c"] {
        store
            .create_media(new_file(id, "bob", Some(c), 5))
            .await
            .expect("create");
    }
    store
        .create_media(new_file("d", "dave", None, 5))
        .await
        .expect("create");

    expect_err!(
        store.delete_media(TENANT, "eve", "a").await,
        StoreError::NotFound("media")
    );
    let deleted = store
        .delete_media(TENANT, "bob", "a")
        .await
        .expect("uploader");
    assert_eq!(deleted.id, "a");
    expect_err!(
        store.media(TENANT, "alice", "a").await,
        StoreError::NotFound("media")
    );
    expect_err!(
        store.delete_media(TENANT, "bob", "a").await,
        StoreError::NotFound("media")
    );
    store
        .delete_media(TENANT, "carol", "b")
        .await
        .expect("admin");
    store
        .delete_media(TENANT, "alice", "c")
        .await
        .expect("owner");
    store
        .create_media(new_file("e", "carol", Some(c), 5))
        .await
        .expect("create");
    expect_err!(
        store.delete_media(TENANT, "bob", "e").await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store.delete_media(OTHER_TENANT, "dave", "d").await,
        StoreError::NotFound("media")
    );
    store
        .delete_media(TENANT, "dave", "d")
        .await
        .expect("own file");
}

/// A sender attaches their own files anywhere they are a member, and files already in the
/// conversation; the conversation's members then see the file.
pub async fn media_attachment_rules(store: DynStore, _sink: Arc<RecordingSink>) {
    let first = group(&store, "alice", &["bob"]).await;
    let second = group(&store, "bob", &["carol"]).await;
    let (c1, c2) = (first.id.as_str(), second.id.as_str());
    store
        .create_media(new_file("own", "bob", None, 1))
        .await
        .expect("own");
    store
        .create_media(new_file("in-c1", "alice", Some(c1), 1))
        .await
        .expect("in c1");
    let ids = |list: &[&str]| list.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();

    let attached = store
        .attach_media(TENANT, "bob", c2, &ids(&["own"]))
        .await
        .expect("own file");
    assert_eq!(attached[0].conversations, [c2]);
    assert_eq!(
        store
            .media(TENANT, "carol", "own")
            .await
            .expect("carol sees it")
            .id,
        "own"
    );
    // Alice's file, in c1: Bob may send it again in c1, not forward it to c2.
    let again = store
        .attach_media(TENANT, "bob", c1, &ids(&["in-c1", "own"]))
        .await
        .expect("c1");
    assert_eq!(
        again.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["in-c1", "own"]
    );
    let mut both = vec![c1.to_owned(), c2.to_owned()];
    both.sort();
    assert_eq!(again[1].conversations, both);
    expect_err!(
        store
            .attach_media(TENANT, "bob", c2, &ids(&["in-c1"]))
            .await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store
            .attach_media(TENANT, "bob", c1, &ids(&["made-up"]))
            .await,
        StoreError::NotFound("media")
    );
    expect_err!(
        store
            .attach_media(TENANT, "carol", c1, &ids(&["own"]))
            .await,
        StoreError::NotMember
    );
    expect_err!(
        store
            .attach_media(OTHER_TENANT, "bob", c1, &ids(&["own"]))
            .await,
        StoreError::NotFound(_)
    );
}

/// Usage sums the tenant's files; a file past the quota is refused; downloads are counted.
pub async fn media_quota_usage_and_downloads(store: DynStore, _sink: Arc<RecordingSink>) {
    assert_eq!(store.media_usage(TENANT).await.expect("usage"), 0);
    store
        .create_media(new_file("a", "alice", None, 60))
        .await
        .expect("a");
    let mut b = new_file("b", "alice", None, 40);
    b.quota = Some(100);
    store.create_media(b).await.expect("exactly the quota");
    let mut c = new_file("c", "bob", None, 1);
    c.quota = Some(100);
    expect_err!(
        store.create_media(c).await,
        StoreError::QuotaExceeded {
            used: 100,
            quota: 100
        }
    );
    assert_eq!(store.media_usage(TENANT).await.expect("usage"), 100);
    assert_eq!(store.media_usage(OTHER_TENANT).await.expect("usage"), 0);
    store
        .delete_media(TENANT, "alice", "a")
        .await
        .expect("delete");
    assert_eq!(store.media_usage(TENANT).await.expect("usage"), 40);

    store.count_download(TENANT, "b").await.expect("count");
    store.count_download(TENANT, "b").await.expect("count");
    store
        .count_download(OTHER_TENANT, "b")
        .await
        .expect("another tenant's: no-op");
    assert_eq!(
        store
            .media(TENANT, "alice", "b")
            .await
            .expect("b")
            .downloads,
        2
    );
}
