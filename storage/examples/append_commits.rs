//! One durable commit per message, as under the chat load (1,000 msg/s over 1,000 conversations
//! rarely share a batch): appends `MESSAGES` messages one at a time, each awaited before the
//! next, round robin over `CONVERSATIONS` groups of five. A driver for counting what the writer
//! does per message: run it under `strace -f -y -e trace=pwrite64,fdatasync` (WAL frames are a
//! 24-byte header and a page written to `…-wal`) or `valgrind --tool=callgrind
//! --separate-threads=yes` (the `confab-sqlite-w` thread's instructions).
//!
//! `cargo run --release -p confab-storage --example append_commits -- DIR [MESSAGES]
//! [CONVERSATIONS]`: the database is `DIR/append.db`, created fresh. The first append to each
//! conversation warms it; the counted messages follow (see the printed split).

use std::sync::Arc;

use confab_protocol::rest::ConversationKind;
use confab_storage::sqlite::{SqliteOptions, SqliteStore};
use confab_storage::{NewConversation, NewMessage, NullSink, Store};

const TENANT: &str = "bench";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: append_commits DIR [MESSAGES] [CONVERSATIONS]")?,
    );
    let messages: u64 = args.next().map_or(Ok(5_000), |n| n.parse())?;
    let conversations: u64 = args.next().map_or(Ok(1_000), |n| n.parse())?;
    let path = dir.join("append.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let _ = std::fs::remove_file(confab_storage::sqlite::created_marker(&path));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = SqliteStore::open(&path, Arc::new(NullSink), SqliteOptions::default())?;
        let mut rooms = Vec::new();
        for room in 0..conversations {
            let members: Vec<String> = (1..5).map(|i| format!("u{room}-{i}")).collect();
            let (conversation, _) = store
                .create_conversation(NewConversation {
                    tenant: TENANT.into(),
                    creator: format!("u{room}-0"),
                    kind: ConversationKind::Group,
                    title: None,
                    members,
                })
                .await?;
            rooms.push(conversation.id);
        }
        let append = |n: u64| {
            let room = n % conversations;
            NewMessage {
                tenant: TENANT.into(),
                conversation: rooms[room as usize].clone(),
                author: format!("u{room}-{}", (n / conversations) % 5),
                client_msg_id: format!("m{n}"),
                body: "hello there, how are you doing today?".into(),
                reply_to: None,
                attachments: vec![],
                repeat_only: false,
            }
        };
        for n in 0..conversations {
            store.append_message(append(n)).await?;
        }
        eprintln!("warmed: {conversations} messages; now {messages} counted ones");
        let started = std::time::Instant::now();
        for n in conversations..conversations + messages {
            store.append_message(append(n)).await?;
        }
        eprintln!(
            "{messages} commits in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        store.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
