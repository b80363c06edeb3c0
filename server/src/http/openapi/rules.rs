//! The checks the handlers make on their input, written into the document as JSON Schema
//! keywords (lengths, patterns, enums, item counts), so that clients and fuzzers know them.

/// Characters no id, name or title may hold: controls (Unicode Cc) and the invisible
/// formatting characters of [`crate::validate::is_invisible_format`] (those of the Basic
/// Multilingual Plane; JSON Schema's regular expressions name no others portably).
const HIDDEN: &str = r"\x00-\x1f\x7f-\x9f\xad\u061c\u06dd\u070f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb";

/// What `validate::id`, `validate::user_id` and `validate::client_msg_id` accept: 1 to `max`
/// characters, none hidden.
fn token(max: usize) -> serde_json::Value {
    serde_json::json!({"type": "string", "minLength": 1, "maxLength": max,
        "pattern": format!("^[^{HIDDEN}]+$")})
}

/// Text with at least one visible character, none of `hidden`, at most `max` characters.
fn text(hidden: &str, max: Option<usize>) -> serde_json::Value {
    let mut schema = serde_json::json!({"type": "string", "minLength": 1,
        "pattern": format!("^[^{hidden}]*[^\\s{hidden}][^{hidden}]*$")});
    if let Some(max) = max {
        schema["maxLength"] = max.into();
    }
    schema
}

/// The field checks of `server/src/validate.rs` (and the handlers'), as schema keywords on the
/// request bodies, so that clients and fuzzers know them.
pub(super) fn body_constraints(doc: &mut serde_json::Value) {
    use crate::validate::MAX_ID_LEN;
    use confab_protocol::limits::{
        MAX_ATTACHMENTS, MAX_CLIENT_MSG_ID_LEN, MAX_EMOJI_LEN, MAX_INITIAL_MEMBERS, MAX_TITLE_LEN,
        MAX_USER_ID_LEN,
    };
    // A message body may hold line breaks and tabs, no other control character.
    let body_hidden = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f";
    let title = text(HIDDEN, Some(MAX_TITLE_LEN));
    let user = token(MAX_USER_ID_LEN);
    let id = token(MAX_ID_LEN);
    let emoji = serde_json::json!({"type": "string", "minLength": 1, "maxLength": MAX_EMOJI_LEN,
        "pattern": "^[^\\s\\x00-\\x1f\\x7f-\\x9f]+$"});
    let rules: Vec<(&str, &str, serde_json::Value)> = vec![
        ("CreateConversation", "title", title.clone()),
        (
            "CreateConversation",
            "members",
            serde_json::json!({"type": "array", "items": user, "maxItems": MAX_INITIAL_MEMBERS}),
        ),
        ("UpdateConversation", "title", title),
        ("AddMember", "user", user.clone()),
        ("SendMessage", "client_msg_id", token(MAX_CLIENT_MSG_ID_LEN)),
        ("SendMessage", "body", text(body_hidden, None)),
        ("SendMessage", "reply_to", id.clone()),
        (
            "SendMessage",
            "attachments",
            serde_json::json!({"type": "array", "maxItems": MAX_ATTACHMENTS}),
        ),
        ("EditMessage", "body", text(body_hidden, None)),
        ("AddReaction", "emoji", emoji),
        ("Attachment", "id", id.clone()),
        ("Attachment", "name", token(255)),
        ("Attachment", "mime", token(255)),
        // `name` and `content_type` are taken as given and made safe (`safe_name`).
        (
            "CreateUpload",
            "sha256",
            serde_json::json!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}),
        ),
        ("CreateUpload", "conversation", id.clone()),
        ("UploadForm", "conversation", id),
        (
            "DevTokenRequest",
            "user",
            serde_json::json!({"type": "string", "minLength": 1,
            "maxLength": MAX_USER_ID_LEN, "pattern": format!("^[^\\s{HIDDEN}]+$")}),
        ),
        ("DevTokenRequest", "tenant", user),
        (
            "DevTokenRequest",
            "name",
            text(r"\x00-\x1f\x7f-\x9f", Some(128)),
        ),
    ];
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    whole_schema_rules(schemas);
    for (schema, property, constraint) in rules {
        let Some(slot) = schemas
            .get_mut(schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(property))
        else {
            continue;
        };
        constrain(slot, constraint);
    }
}

/// Adds the keywords of `constraint` to the property schema `slot`, keeping what the type
/// said (its description, whether it may be null).
fn constrain(slot: &mut serde_json::Value, mut constraint: serde_json::Value) {
    let nullable = slot["type"]
        .as_array()
        .is_some_and(|types| types.contains(&"null".into()));
    if nullable {
        constraint["type"] = serde_json::json!([constraint["type"].clone(), "null"]);
    }
    if let (Some(slot), Some(add)) = (slot.as_object_mut(), constraint.as_object()) {
        for (keyword, value) in add {
            slot.insert(keyword.clone(), value.clone());
        }
    }
}

/// The parameters of an operation.
fn parameters_mut(
    operation: &mut serde_json::Value,
) -> impl Iterator<Item = &mut serde_json::Value> {
    operation
        .get_mut("parameters")
        .and_then(serde_json::Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Path parameters are ids: 1 to 128 printable ASCII characters (what the server generates
/// and accepts); an emoji is 1 to 16 characters without spaces.
pub(super) fn path_parameters(operation: &mut serde_json::Value) {
    for parameter in parameters_mut(operation) {
        if parameter["in"] != "path" || parameter["schema"]["type"] != "string" {
            continue;
        }
        parameter["schema"] = if parameter["name"] == "emoji" {
            serde_json::json!({"type": "string", "minLength": 1,
                "maxLength": confab_protocol::limits::MAX_EMOJI_LEN,
                "pattern": "^[^\\s\\x00-\\x1f\\x7f-\\x9f]+$"})
        } else {
            serde_json::json!({"type": "string", "minLength": 1, "maxLength": 128,
                "pattern": "^[!-~]+$"})
        };
    }
}

/// The rules of [`body_constraints`] that concern a whole schema rather than one property.
fn whole_schema_rules(schemas: &mut serde_json::Map<String, serde_json::Value>) {
    // An attachment object holds these fields only (`AttachmentObject` denies others).
    if let Some(attachment) = schemas
        .get_mut("Attachment")
        .and_then(serde_json::Value::as_object_mut)
    {
        attachment.insert("additionalProperties".to_owned(), false.into());
    }
    // A direct conversation names its one other member, and has no title.
    if let Some(create) = schemas
        .get_mut("CreateConversation")
        .and_then(serde_json::Value::as_object_mut)
    {
        create.insert(
            "if".to_owned(),
            serde_json::json!({"properties": {"kind": {"const": "direct"}}}),
        );
        create.insert(
            "then".to_owned(),
            serde_json::json!({"required": ["members"],
                "properties": {"members": {"minItems": 1, "maxItems": 1},
                    "title": {"type": "null"}}}),
        );
    }
}

/// The checks of the handlers on their string query and header parameters, as schema keywords.
pub(super) fn query_parameters(path: &str, operation: &mut serde_json::Value) {
    let rules = query_rules();
    for parameter in parameters_mut(operation) {
        if parameter["in"] != "query" && parameter["in"] != "header" {
            continue;
        }
        if let Some((_, _, schema)) = rules
            .iter()
            .find(|(p, name, _)| *p == path && parameter["name"] == *name)
        {
            parameter["schema"] = schema.clone();
        }
    }
}

/// The rules of [`query_parameters`]: the route as the document names it, the parameter, and
/// its schema. (A rule whose route or parameter is gone would apply to nothing: a test of
/// `openapi` checks that each one finds its parameter.)
pub(super) fn query_rules() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    use crate::validate::MAX_ID_LEN;
    use confab_protocol::limits::MAX_USER_ID_LEN;
    let nonblank = |max: usize| {
        serde_json::json!({"type": "string", "minLength": 1, "maxLength": max,
            "pattern": "^\\s*\\S[\\s\\S]*$"})
    };
    let day = serde_json::json!({"type": "string", "format": "date",
        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"});
    vec![
        ("/v1/conversations", "cursor", token(MAX_ID_LEN)),
        (
            "/v1/search/messages",
            "q",
            serde_json::json!({"type": "string", "maxLength": 1000}),
        ),
        ("/v1/search/messages", "conversation", token(MAX_ID_LEN)),
        ("/v1/search/messages", "author", token(MAX_USER_ID_LEN)),
        ("/v1/search/messages", "from", day.clone()),
        ("/v1/search/messages", "to", day),
        (
            "/v1/search/messages",
            "has",
            serde_json::json!({"type": "string", "enum": ["attachment"]}),
        ),
        (
            "/v1/search/messages",
            "sort",
            serde_json::json!({"type": "string", "enum": ["relevance", "recent"]}),
        ),
        (
            "/v1/search/messages",
            "cursor",
            // An offset, at most `confab_search::MAX_CURSOR`, or `k` and a page key.
            serde_json::json!({"type": "string", "pattern": "^([0-9]{1,4}|k[0-9]{1,19})$"}),
        ),
        (
            "/v1/search/messages",
            "wait_for",
            serde_json::json!({"type": "string", "pattern": "^.+:[0-9]{1,19}$"}),
        ),
        ("/v1/search/users", "q", nonblank(200)),
        ("/v1/search/conversations", "q", nonblank(200)),
        ("/v1/search", "q", nonblank(200)),
        (
            "/v1/media/uploads/{upload_id}/chunks/{n}",
            "X-Chunk-SHA256",
            serde_json::json!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}),
        ),
    ]
}
