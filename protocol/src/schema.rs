//! The JSON Schema (draft 2020-12) of every WebSocket frame, derived from the serde types
//! above with `schemars`, so a renamed or added field changes the schema with it. The server
//! serves it at `/v1/protocol.schema.json`.
//!
//! The document's root accepts either direction (`anyOf`, since a client `typing` or `read`
//! frame can also pass for the server's with extra fields); `$defs/ClientFrame` and
//! `$defs/ServerFrame` describe one direction each, a `oneOf` discriminated by `type` exactly
//! as serde writes it. Unknown fields are allowed where serde ignores them and refused
//! (`additionalProperties: false`) where a type denies them.

use schemars::{JsonSchema, Schema};

use crate::{ClientFrame, ServerFrame};

/// Any WebSocket frame, in either direction.
#[derive(JsonSchema)]
#[schemars(
    title = "Confab WebSocket frames",
    description = "One JSON object per text frame. Clients send ClientFrame, the server sends ServerFrame; see docs/protocol.md."
)]
#[serde(untagged)]
#[allow(dead_code)] // Only its schema is used.
enum Frame {
    Client(ClientFrame),
    Server(ServerFrame),
}

/// The schema document of both directions, with `ClientFrame` and `ServerFrame` in `$defs`.
pub fn frames_schema() -> Schema {
    schemars::schema_for!(Frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_are_named_definitions() {
        let schema = serde_json::to_value(frames_schema()).expect("serialize");
        let defs = schema["$defs"].as_object().expect("$defs");
        for name in [
            "ClientFrame",
            "ServerFrame",
            "ErrorCode",
            "Limits",
            "MessageEvent",
        ] {
            assert!(defs.contains_key(name), "{name} missing from {defs:?}");
        }
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
}
