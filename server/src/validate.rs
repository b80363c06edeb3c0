//! Field checks shared by the WebSocket commands and the REST handlers.

use confab_protocol::limits::{
    MAX_ATTACHMENTS, MAX_CLIENT_MSG_ID_LEN, MAX_EMOJI_LEN, MAX_TITLE_LEN, MAX_USER_ID_LEN,
};
use confab_protocol::rest::Attachment;

use crate::error::AppError;

/// Longest id (conversation, message) the server accepts, in characters.
pub const MAX_ID_LEN: usize = 128;

/// Whether `c` is an invisible formatting character (Unicode category Cf): bidi overrides and
/// isolates, zero-width spaces and joiners, soft hyphens, tags. They let `admin\u{202E}nimda`
/// pass for another name, so ids and titles refuse them and display names drop them.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x061C | 0x06DD | 0x070F | 0x180E
        | 0x200B..=0x200F      // zero-width spaces and joiners, LRM, RLM
        | 0x202A..=0x202E      // bidi embeddings and overrides
        | 0x2060..=0x2064      // word joiner, invisible operators
        | 0x2066..=0x206F      // bidi isolates, deprecated format controls
        | 0xFEFF               // zero-width no-break space (BOM)
        | 0xFFF9..=0xFFFB      // interlinear annotations
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001 | 0xE0020..=0xE007F // tags
    )
}

/// Whether `text` has a control or invisible formatting character.
pub fn has_hidden_characters(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() || is_invisible_format(c))
}

/// A display name with its control and invisible formatting characters removed.
pub fn visible(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .collect()
}

fn token_like(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.is_empty() {
        return Err(AppError::invalid(format!("`{field}` must not be empty")));
    }
    if value.chars().count() > max {
        return Err(AppError::too_large(format!(
            "`{field}` is longer than {max} characters"
        )));
    }
    if has_hidden_characters(value) {
        return Err(AppError::invalid(format!(
            "`{field}` must not contain control or invisible formatting characters"
        )));
    }
    Ok(())
}

/// A conversation or message id.
pub fn id(field: &str, value: &str) -> Result<(), AppError> {
    token_like(field, value, MAX_ID_LEN)
}

/// A user id.
pub fn user_id(field: &str, value: &str) -> Result<(), AppError> {
    token_like(field, value, MAX_USER_ID_LEN)
}

pub fn client_msg_id(value: &str) -> Result<(), AppError> {
    token_like("client_msg_id", value, MAX_CLIENT_MSG_ID_LEN)
}

/// A reaction: one short string without whitespace or control characters.
pub fn emoji(value: &str) -> Result<(), AppError> {
    // Not token_like: emoji sequences are built with zero-width joiners and tag characters.
    if value.is_empty() {
        return Err(AppError::invalid("`emoji` must not be empty"));
    }
    if value.chars().count() > MAX_EMOJI_LEN {
        return Err(AppError::too_large(format!(
            "`emoji` is longer than {MAX_EMOJI_LEN} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "`emoji` must not contain control characters",
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(AppError::invalid("`emoji` must not contain whitespace"));
    }
    Ok(())
}

/// A message body: not blank unless attachments carry the message, at most `max` bytes.
pub fn body(value: &str, max: usize, has_attachments: bool) -> Result<(), AppError> {
    if value.len() > max {
        return Err(AppError::too_large(format!(
            "`body` is longer than {max} bytes"
        )));
    }
    if value.trim().is_empty() && !has_attachments {
        return Err(AppError::invalid("`body` must not be empty"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(AppError::invalid(
            "`body` must not contain control characters",
        ));
    }
    Ok(())
}

pub fn attachments(items: &[Attachment]) -> Result<(), AppError> {
    if items.len() > MAX_ATTACHMENTS {
        return Err(AppError::too_large(format!(
            "at most {MAX_ATTACHMENTS} attachments"
        )));
    }
    for item in items {
        id("attachments.id", &item.id)?;
        if let Some(name) = &item.name {
            token_like("attachments.name", name, 255)?;
        }
        if let Some(mime) = &item.mime {
            token_like("attachments.mime", mime, 255)?;
        }
    }
    Ok(())
}

pub fn title(value: &str) -> Result<(), AppError> {
    if value.chars().count() > MAX_TITLE_LEN {
        return Err(AppError::too_large(format!(
            "`title` is longer than {MAX_TITLE_LEN} characters"
        )));
    }
    if value.trim().is_empty() {
        return Err(AppError::invalid("`title` must not be blank"));
    }
    if has_hidden_characters(value) {
        return Err(AppError::invalid(
            "`title` must not contain control or invisible formatting characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_protocol::ErrorCode;

    #[test]
    fn bodies() {
        assert!(body("hi", 10, false).is_ok());
        assert!(body("line\nbreak", 20, false).is_ok());
        assert_eq!(body("   ", 10, false).unwrap_err().code, ErrorCode::Invalid);
        assert!(body("", 10, true).is_ok());
        assert_eq!(
            body("x".repeat(11).as_str(), 10, false).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            body("a\u{0}b", 10, false).unwrap_err().code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn ids_and_emoji() {
        assert!(id("conversation", "abc").is_ok());
        assert_eq!(id("conversation", "").unwrap_err().code, ErrorCode::Invalid);
        assert_eq!(
            id("conversation", &"a".repeat(129)).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert!(emoji("👍").is_ok());
        assert!(emoji("a b").is_err());
        assert!(client_msg_id("m-1").is_ok());
        assert!(client_msg_id("\n").is_err());
        assert!(emoji("👨\u{200D}👩\u{200D}👧").is_ok(), "a ZWJ sequence");
    }

    #[test]
    fn bidi_tricks_and_invisible_characters_are_refused_in_ids_and_titles() {
        for spoof in [
            "admin\u{202E}nimda",
            "bob\u{200B}",
            "\u{2066}x\u{2069}",
            "a\u{FEFF}b",
        ] {
            assert_eq!(
                id("conversation", spoof).unwrap_err().code,
                ErrorCode::Invalid
            );
            assert_eq!(
                user_id("members", spoof).unwrap_err().code,
                ErrorCode::Invalid
            );
            assert_eq!(title(spoof).unwrap_err().code, ErrorCode::Invalid);
        }
        assert!(title("Café ☕ and 東京").is_ok());
        assert_eq!(visible("Al\u{202E}ice\u{200B}"), "Alice");
    }
}
