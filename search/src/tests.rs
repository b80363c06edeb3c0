use super::*;

const TENANT: &str = "acme";

fn posted(conversation: &str, id: &str, seq: u64, author: &str, body: &str) -> IndexEvent {
    IndexEvent::Posted {
        tenant: TENANT.to_owned(),
        conversation: conversation.to_owned(),
        id: id.to_owned(),
        seq,
        author: author.to_owned(),
        body: body.to_owned(),
        // c2 a little after c1, so that no two messages share a time.
        ts: 1_000 * seq as i64 + if conversation == "c2" { 500 } else { 0 },
        attachments: id.ends_with("-file"),
    }
}

fn edited(conversation: &str, message: &str, seq: u64, body: &str) -> IndexEvent {
    IndexEvent::Edited {
        tenant: TENANT.to_owned(),
        conversation: conversation.to_owned(),
        message: message.to_owned(),
        seq,
        body: body.to_owned(),
    }
}

fn deleted(conversation: &str, message: &str, seq: u64) -> IndexEvent {
    IndexEvent::Deleted {
        tenant: TENANT.to_owned(),
        conversation: conversation.to_owned(),
        message: message.to_owned(),
        seq,
    }
}

/// A small history of two conversations, edits and deletes included.
fn history() -> Vec<IndexEvent> {
    vec![
        posted(
            "c1",
            "m1",
            1,
            "alice",
            "Hello world, the launch is on Friday",
        ),
        posted("c1", "m2", 2, "bob", "Secret password is swordfish"),
        edited("c1", "m1", 3, "Hello world, the launch moved to Monday"),
        posted("c1", "m3-file", 4, "alice", "the quarterly report attached"),
        deleted("c1", "m2", 5),
        posted("c2", "m4", 1, "carol", "Launch party in the garden"),
        edited(
            "c1",
            "m3-file",
            6,
            "the quarterly report attached, final version",
        ),
        posted("c2", "m5", 2, "alice", "Spam spam lovely launch"),
    ]
}

fn index_of(events: &[IndexEvent]) -> SearchIndex {
    let index = SearchIndex::in_memory().expect("index");
    index.apply(events.to_vec()).expect("apply");
    index.commit().expect("commit");
    index
}

/// A newest-first page of `text`'s hits in `conversations`.
fn page(
    index: &SearchIndex,
    text: &str,
    conversations: &[&str],
    limit: usize,
    cursor: Option<&str>,
) -> Hits {
    let conversations: Vec<String> = conversations.iter().map(|c| (*c).to_owned()).collect();
    let parsed = query::parse(text).expect("parse");
    index
        .search(&Search {
            tenant: TENANT,
            conversations: &conversations,
            query: &parsed,
            sort: Sort::Recent,
            limit,
            cursor,
        })
        .expect("search")
}

fn ids(index: &SearchIndex, text: &str, conversations: &[&str]) -> Vec<String> {
    let hits = page(index, text, conversations, 50, None);
    hits.hits.into_iter().map(|hit| hit.id).collect()
}

#[test]
fn a_shuffled_duplicated_stream_gives_the_same_index_as_the_ordered_one() {
    let ordered = index_of(&history());
    let mut shuffled = history();
    shuffled.reverse();
    shuffled.extend(history().into_iter().rev());
    shuffled.rotate_left(3);
    let replayed = SearchIndex::in_memory().expect("index");
    // In several batches and commits, as a stream would arrive.
    for batch in shuffled.chunks(3) {
        replayed.apply(batch.to_vec()).expect("apply");
        replayed.commit().expect("commit");
    }
    for text in [
        "launch",
        "hello",
        "swordfish",
        "report",
        "monday",
        "friday",
        "spam",
        "",
    ] {
        assert_eq!(
            ids(&ordered, text, &["c1", "c2"]),
            ids(&replayed, text, &["c1", "c2"]),
            "{text:?}"
        );
    }
    assert_eq!(replayed.indexed_seq("c1"), 6);
    assert_eq!(replayed.indexed_seq("c2"), 2);
}

#[test]
fn edits_and_deletes_are_reflected_and_never_undone_by_older_events() {
    let index = index_of(&history());
    let both = ["c1", "c2"];
    assert_eq!(ids(&index, "monday", &both), ["m1"]);
    assert!(ids(&index, "friday", &both).is_empty(), "edited away");
    assert!(ids(&index, "swordfish", &both).is_empty(), "deleted");
    // An edit older than the delete arrives late: it changes nothing.
    index
        .apply(vec![edited("c1", "m2", 4, "swordfish again")])
        .expect("apply");
    index
        .apply(vec![posted("c1", "m2", 2, "bob", "swordfish")])
        .expect("apply");
    index.commit().expect("commit");
    assert!(ids(&index, "swordfish", &both).is_empty(), "still deleted");
}

#[test]
fn only_the_callers_conversations_and_tenant_are_searched() {
    let index = index_of(&history());
    assert_eq!(ids(&index, "launch", &["c1", "c2"]), ["m5", "m4", "m1"]);
    assert_eq!(ids(&index, "launch", &["c2"]), ["m5", "m4"]);
    assert!(ids(&index, "launch", &[]).is_empty());
    let parsed = query::parse("launch").expect("parse");
    let other = index
        .search(&Search {
            tenant: "other",
            conversations: &["c1".to_owned()],
            query: &parsed,
            sort: Sort::Relevance,
            limit: 10,
            cursor: None,
        })
        .expect("search");
    assert!(other.hits.is_empty());
}

#[test]
fn typos_phrases_exclusions_and_filters_work() {
    let index = index_of(&history());
    let both = ["c1", "c2"];
    assert_eq!(ids(&index, "helo wrld", &both), ["m1"]);
    assert_eq!(ids(&index, "quartrly", &both), ["m3-file"]);
    assert_eq!(ids(&index, r#""launch party""#, &both), ["m4"]);
    assert!(ids(&index, r#""party launch""#, &both).is_empty());
    assert_eq!(ids(&index, "launch -spam", &both), ["m4", "m1"]);
    assert_eq!(ids(&index, "launch from:alice", &both), ["m5", "m1"]);
    assert_eq!(ids(&index, "launch in:c2", &both), ["m5", "m4"]);
    assert_eq!(ids(&index, "has:attachment", &both), ["m3-file"]);
    assert_eq!(ids(&index, "launches", &both).len(), 3, "stems");
    assert_eq!(
        ids(&index, "after:1970-01-01 before:1970-01-02", &both).len(),
        4
    );
    assert!(ids(&index, "LAUNCH émoji 👋 日本語", &both).is_empty());
}

#[test]
fn typos_are_measured_on_the_words_as_written_not_on_their_stems() {
    let index = index_of(&history());
    let both = ["c1", "c2"];
    // "quartely" stems to something far from "quarter", but is one letter from "quarterly".
    assert_eq!(ids(&index, "quartely", &both), ["m3-file"]);
    assert_eq!(ids(&index, "helo wrld", &both), ["m1"]);
    // Two edits from 8 letters on, one below.
    assert_eq!(ids(&index, "quortarly", &both), ["m3-file"]);
    assert!(
        ids(&index, "mondzz", &both).is_empty(),
        "two edits of 6 letters"
    );
    assert_eq!(ids(&index, "mondy", &both), ["m1"]);
    // No typo below 4 letters.
    assert!(ids(&index, "spm", &both).is_empty());
    assert!(ids(&index, "wrl", &both).is_empty());
    // Stems still match exactly.
    assert_eq!(ids(&index, "reports", &both), ["m3-file"]);
    // The typo's match is highlighted.
    let parsed = query::parse("quartely").expect("parse");
    let hits = index
        .search(&Search {
            tenant: TENANT,
            conversations: &["c1".to_owned()],
            query: &parsed,
            sort: Sort::Relevance,
            limit: 5,
            cursor: None,
        })
        .expect("search");
    assert_eq!(
        hits.hits[0].snippet,
        "the <mark>quarterly</mark> report attached, final version"
    );
}

#[test]
fn hits_carry_snippets_cursors_and_how_far_the_index_is() {
    let index = index_of(&history());
    let parsed = query::parse("launch").expect("parse");
    let conversations = vec!["c1".to_owned(), "c2".to_owned()];
    let mut search = Search {
        tenant: TENANT,
        conversations: &conversations,
        query: &parsed,
        sort: Sort::Recent,
        limit: 2,
        cursor: None,
    };
    let first = index.search(&search).expect("search");
    assert_eq!(first.hits.len(), 2);
    assert_eq!(
        first.hits[0].snippet,
        "Spam spam lovely <mark>launch</mark>"
    );
    assert_eq!(first.indexed_seq.get("c2"), Some(&2));
    let cursor = first.next_cursor.clone().expect("a next page");
    search.cursor = Some(&cursor);
    let second = index.search(&search).expect("search");
    assert_eq!(
        second
            .hits
            .iter()
            .map(|h| h.id.as_str())
            .collect::<Vec<_>>(),
        ["m1"]
    );
    assert_eq!(second.next_cursor, None);
    assert_eq!(second.hits[0].author, "alice");
    search.cursor = Some("not a cursor");
    assert!(matches!(
        index.search(&search),
        Err(SearchError::Invalid(_))
    ));
}

#[test]
fn an_index_on_disk_keeps_its_documents_and_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let index = SearchIndex::open(dir.path()).expect("open");
        index.apply(history()).expect("apply");
        index.commit().expect("commit");
    }
    let index = SearchIndex::open(dir.path()).expect("reopen");
    assert_eq!(index.indexed_seq("c1"), 6);
    assert_eq!(ids(&index, "monday", &["c1"]), ["m1"]);
}

#[test]
fn chinese_japanese_and_korean_text_is_found_by_two_characters() {
    let index = index_of(&[
        posted("c1", "zh", 1, "li", "我们明天在北京见面"),
        posted("c1", "ja", 2, "ken", "東京都に行きます"),
        posted("c1", "ko", 3, "min", "서울에서 만나요 🎉"),
        posted("c1", "mixed", 4, "ann", "Meeting in 大阪 café tomorrow"),
    ]);
    assert_eq!(ids(&index, "北京", &["c1"]), ["zh"]);
    assert_eq!(ids(&index, "東京", &["c1"]), ["ja"]);
    assert_eq!(ids(&index, "京都", &["c1"]), ["ja"]);
    assert_eq!(ids(&index, "東京都", &["c1"]), ["ja"]);
    assert_eq!(ids(&index, "\"行きます\"", &["c1"]), ["ja"]);
    assert_eq!(ids(&index, "서울", &["c1"]), ["ko"]);
    assert_eq!(ids(&index, "大阪 cafe", &["c1"]), ["mixed"]);
    assert!(ids(&index, "上海", &["c1"]).is_empty());
    assert!(
        ids(&index, "🎉 !!", &["c1"]).is_empty(),
        "a query of no words finds nothing"
    );
    let parsed = query::parse("東京").expect("parse");
    let hits = index
        .search(&Search {
            tenant: TENANT,
            conversations: &["c1".to_owned()],
            query: &parsed,
            sort: Sort::Relevance,
            limit: 5,
            cursor: None,
        })
        .expect("search");
    assert_eq!(hits.hits[0].snippet, "<mark>東京</mark>都に行きます");
}

#[test]
fn an_index_of_another_schema_version_is_rebuilt_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // An index as an older build left it: version 1 in its commit payload.
        let index = Index::create_in_dir(dir.path(), schema().0).expect("create");
        let mut writer: IndexWriter = index.writer(WRITER_MEMORY).expect("writer");
        let mut prepared = writer.prepare_commit().expect("prepare");
        prepared.set_payload(r#"{"v":1,"indexed":{"c1":7}}"#);
        prepared.commit().expect("commit");
    }
    let index = SearchIndex::open(dir.path()).expect("open");
    assert_eq!(index.indexed_seq("c1"), 0, "rebuilt: nothing indexed yet");
    index
        .apply(vec![posted("c1", "m1", 1, "ann", "fresh start")])
        .expect("apply");
    index.commit().expect("commit");
    drop(index);
    let reopened = SearchIndex::open(dir.path()).expect("reopen");
    assert_eq!(reopened.indexed_seq("c1"), 1, "the current version is kept");
    assert_eq!(ids(&reopened, "fresh", &["c1"]), ["m1"]);
}

#[test]
fn completions_are_live_words_of_the_callers_conversations() {
    let index = index_of(&history());
    let words = |prefix: &str, conversations: &[&str], tenant: &str| {
        let conversations: Vec<String> = conversations.iter().map(|c| (*c).to_owned()).collect();
        index
            .complete(tenant, &conversations, prefix, 10)
            .expect("complete")
            .into_iter()
            .map(|c| (c.word, c.messages))
            .collect::<Vec<_>>()
    };
    // Real words, not stems, by how many messages have them.
    assert_eq!(
        words("LAU", &["c1", "c2"], TENANT),
        [("launch".to_owned(), 3)]
    );
    assert_eq!(
        words("the qua", &["c1"], TENANT),
        [("quarterly".to_owned(), 1)]
    );
    // Deleted and edited-away words are not suggested.
    assert!(words("sword", &["c1", "c2"], TENANT).is_empty());
    assert!(words("frid", &["c1", "c2"], TENANT).is_empty());
    // Nor words of conversations the caller cannot read, nor of another tenant.
    assert!(words("gard", &["c1"], TENANT).is_empty());
    assert_eq!(words("gard", &["c2"], TENANT), [("garden".to_owned(), 1)]);
    assert!(words("gard", &["c2"], "other").is_empty());
    assert!(words("", &["c2"], TENANT).is_empty());
}

#[test]
fn newest_first_pages_neither_repeat_nor_skip_while_messages_arrive() {
    let index = index_of(&history());
    // Two messages of one time: the cursor counts the ones already returned.
    index
        .apply(vec![
            posted("c1", "t1", 7, "ann", "launch twin one"),
            IndexEvent::Posted {
                tenant: TENANT.to_owned(),
                conversation: "c1".to_owned(),
                id: "t2".to_owned(),
                seq: 8,
                author: "ann".to_owned(),
                body: "launch twin two".to_owned(),
                ts: 7_000,
                attachments: false,
            },
        ])
        .expect("apply");
    index.commit().expect("commit");
    // One page of all: the two of one millisecond in their order key's order.
    let before = ids(&index, "launch", &["c1", "c2"]);
    assert_eq!(before.len(), 5);
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for round in 0..20_u64 {
        let hits = page(&index, "launch", &["c1", "c2"], 1, cursor.as_deref());
        seen.extend(hits.hits.into_iter().map(|hit| hit.id));
        // A newer match arrives between every two pages.
        index
            .apply(vec![posted(
                "c1",
                &format!("new{round}"),
                100 + round,
                "bob",
                "launch news",
            )])
            .expect("apply");
        index.commit().expect("commit");
        cursor = hits.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, before, "every earlier match once, in order, none new");
}

/// Relevance pages of a word that allows typos: every hit with the word itself (by its stem)
/// comes before every near miss, and pages of any size walk both tiers once, the page that
/// starts at the boundary included.
#[test]
fn exact_matches_rank_before_near_misses_across_pages() {
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(posted(
            "c1",
            &format!("exact{i}"),
            i + 1,
            "alice",
            "the launch is today",
        ));
    }
    for i in 0..4 {
        events.push(posted(
            "c1",
            &format!("near{i}"),
            i + 10,
            "bob",
            "lunch lunch lunch at noon",
        ));
    }
    for i in 0..2 {
        events.push(posted(
            "c2",
            &format!("far{i}"),
            i + 1,
            "carol",
            "a paunch, launches later",
        ));
    }
    let index = index_of(&events);
    let conversations = ["c1".to_owned(), "c2".to_owned()];
    let parsed = query::parse("launch").expect("parse");
    let search = |limit: usize, cursor: Option<&str>| {
        index
            .search(&Search {
                tenant: TENANT,
                conversations: &conversations,
                query: &parsed,
                sort: Sort::Relevance,
                limit,
                cursor,
            })
            .expect("search")
    };
    let all: Vec<String> = search(50, None).hits.into_iter().map(|h| h.id).collect();
    assert_eq!(all.len(), 11, "{all:?}");
    // "launches" has the stem: the first tier is the five exact ones and the two "far" ones.
    let (first, second) = all.split_at(7);
    assert!(
        first
            .iter()
            .all(|id| id.starts_with("exact") || id.starts_with("far")),
        "{all:?}"
    );
    assert!(second.iter().all(|id| id.starts_with("near")), "{all:?}");
    for size in [1, 2, 3, 7, 8] {
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let hits = search(size, cursor.as_deref());
            walked.extend(hits.hits.into_iter().map(|h| h.id));
            match hits.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(walked, all, "pages of {size}");
    }
}
