//! Client frame decoding and command validation: what the WebSocket session does with every
//! text frame before it touches state (`session/commands.rs`): decode a `ClientFrame`, then the
//! checks of `confab_server::validate` on each field. Nothing here may panic.
#![no_main]

use confab_protocol::{ClientFrame, Command};
use confab_server::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The raw text through the free-text checks too (titles, bodies, ids).
    let _ = validate::has_hidden_characters(text);
    let _ = validate::visible(text);
    let _ = validate::id("conversation", text);
    let _ = validate::user_id("user", text);
    let _ = validate::title(text);
    let _ = validate::emoji(text);
    let _ = validate::client_msg_id(text);
    let _ = validate::body(text, 4096, false);

    let Ok(frame) = serde_json::from_str::<ClientFrame>(text) else {
        return;
    };
    // A decoded frame encodes and decodes back to itself.
    let encoded = serde_json::to_string(&frame).expect("a decoded frame encodes");
    let again: ClientFrame = serde_json::from_str(&encoded).expect("an encoded frame decodes");
    assert_eq!(frame, again);
    match frame.command {
        Command::Join { conversation, .. }
        | Command::Leave { conversation }
        | Command::Typing { conversation } => {
            let _ = validate::id("conversation", &conversation);
        }
        Command::Send {
            conversation,
            client_msg_id,
            body,
            reply_to,
            attachments,
        } => {
            let _ = validate::id("conversation", &conversation);
            let _ = validate::client_msg_id(&client_msg_id);
            let _ = validate::body(&body, 4096, !attachments.is_empty());
            let _ = validate::attachments(&attachments);
            if let Some(reply_to) = reply_to {
                let _ = validate::id("reply_to", &reply_to);
            }
        }
        Command::Edit { message, body } => {
            let _ = validate::id("message", &message);
            let _ = validate::body(&body, 4096, false);
        }
        Command::React { message, emoji } | Command::Unreact { message, emoji } => {
            let _ = validate::id("message", &message);
            let _ = validate::emoji(&emoji);
        }
        Command::Delete { message } => {
            let _ = validate::id("message", &message);
        }
        _ => {}
    }
});
