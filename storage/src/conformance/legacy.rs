//! Data as builds before the storage form of events (schema version 2, before `event_form`)
//! wrote it, for the backends' migration tests: each must convert it on start and replay every
//! frame byte for byte.
//!
//! One group `c1` of tenant `t1` (owner `ann`, member `bob`). Ann posts two messages (one with
//! an attachment, one replying to it), edits the first, Bob reacts to the second and takes it
//! back, Ann adds Cy and makes her admin, deletes the second message (which scrubbed its frame
//! and its edit's), titles the group, and Cy leaves. The frames are exactly as the server sent
//! them and stored them.

/// A stored event: its columns and its frame.
#[derive(Debug, Clone, Copy)]
pub struct OldEvent {
    pub seq: i64,
    pub kind: &'static str,
    pub subject: Option<&'static str>,
    pub ts: i64,
    pub frame: &'static str,
}

/// A message row as it stood after the events.
#[derive(Debug, Clone, Copy)]
pub struct OldMessage {
    pub id: &'static str,
    pub seq: i64,
    pub author: &'static str,
    pub client_msg_id: &'static str,
    pub body: &'static str,
    pub reply_to: Option<&'static str>,
    /// The attachments as JSON, `None` when there are none.
    pub attachments: Option<&'static str>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

/// The conversation's tenant, id and last seq.
pub const TENANT: &str = "t1";
pub const CONVERSATION: &str = "c1";
pub const LAST_SEQ: i64 = 11;

pub const OLD_MESSAGES: &[OldMessage] = &[
    OldMessage {
        id: "m1",
        seq: 1,
        author: "ann",
        client_msg_id: "x1",
        body: "final",
        reply_to: None,
        attachments: Some(r#"[{"id":"f1","name":"a.png","mime":"image/png","size":3}]"#),
        created_at: 1000,
        edited_at: Some(1002),
        deleted_at: None,
    },
    OldMessage {
        id: "m2",
        seq: 2,
        author: "ann",
        client_msg_id: "x2",
        body: "",
        reply_to: Some("m1"),
        attachments: None,
        created_at: 1001,
        edited_at: Some(1007),
        deleted_at: Some(1008),
    },
];

pub const OLD_EVENTS: &[OldEvent] = &[
    OldEvent {
        seq: 1,
        kind: "message",
        subject: None,
        ts: 1000,
        frame: r#"{"type":"message","conversation":"c1","id":"m1","seq":1,"author":"ann","body":"first \"draft\" ✍","ts":1000,"client_msg_id":"x1","attachments":[{"id":"f1","name":"a.png","mime":"image/png","size":3}]}"#,
    },
    OldEvent {
        seq: 2,
        kind: "message",
        subject: None,
        ts: 1001,
        frame: r#"{"type":"message","conversation":"c1","id":"m2","seq":2,"author":"ann","body":"","ts":1001,"client_msg_id":"x2","reply_to":"m1"}"#,
    },
    OldEvent {
        seq: 3,
        kind: "message_edited",
        subject: None,
        ts: 1002,
        frame: r#"{"type":"message_edited","conversation":"c1","seq":3,"message":"m1","author":"ann","body":"final","ts":1002}"#,
    },
    OldEvent {
        seq: 4,
        kind: "reaction_added",
        subject: None,
        ts: 1003,
        frame: r#"{"type":"reaction_added","conversation":"c1","seq":4,"message":"m2","user":"bob","emoji":"👍","ts":1003}"#,
    },
    OldEvent {
        seq: 5,
        kind: "reaction_removed",
        subject: None,
        ts: 1004,
        frame: r#"{"type":"reaction_removed","conversation":"c1","seq":5,"message":"m2","user":"bob","emoji":"👍","ts":1004}"#,
    },
    OldEvent {
        seq: 6,
        kind: "member_added",
        subject: Some("cy"),
        ts: 1005,
        frame: r#"{"type":"member_added","conversation":"c1","seq":6,"user":"cy","role":"member","by":"ann","ts":1005}"#,
    },
    OldEvent {
        seq: 7,
        kind: "member_role_changed",
        subject: Some("cy"),
        ts: 1006,
        frame: r#"{"type":"member_role_changed","conversation":"c1","seq":7,"user":"cy","role":"admin","by":"ann","ts":1006}"#,
    },
    OldEvent {
        seq: 8,
        kind: "message_edited",
        subject: None,
        ts: 1007,
        frame: r#"{"type":"message_edited","conversation":"c1","seq":8,"message":"m2","author":"ann","body":"","ts":1007}"#,
    },
    OldEvent {
        seq: 9,
        kind: "message_deleted",
        subject: None,
        ts: 1008,
        frame: r#"{"type":"message_deleted","conversation":"c1","seq":9,"message":"m2","by":"ann","ts":1008}"#,
    },
    OldEvent {
        seq: 10,
        kind: "conversation_updated",
        subject: None,
        ts: 1009,
        frame: r#"{"type":"conversation_updated","conversation":"c1","seq":10,"title":"plans","archived":false,"by":"ann","ts":1009}"#,
    },
    OldEvent {
        seq: 11,
        kind: "member_removed",
        subject: Some("cy"),
        ts: 1010,
        frame: r#"{"type":"member_removed","conversation":"c1","seq":11,"user":"cy","by":"cy","ts":1010}"#,
    },
];

/// Checks that `store`, started on the old data, replays every old event as the frame it was
/// stored as, with the same subject.
pub async fn assert_replays_old_events(store: &dyn crate::Store) {
    let (events, last_seq) = store
        .events_after(TENANT, "bob", CONVERSATION, 0, 100)
        .await
        .expect("replay");
    assert_eq!(i64::try_from(last_seq).expect("seq"), LAST_SEQ);
    let replayed: Vec<String> = events
        .iter()
        .map(|event| event.render().expect("render"))
        .collect();
    let old: Vec<&str> = OLD_EVENTS.iter().map(|old| old.frame).collect();
    assert_eq!(replayed, old);
    let subjects: Vec<Option<&str>> = events.iter().map(|event| event.subject()).collect();
    let old_subjects: Vec<Option<&str>> = OLD_EVENTS.iter().map(|old| old.subject).collect();
    assert_eq!(subjects, old_subjects);
}
