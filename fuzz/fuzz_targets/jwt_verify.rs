//! The JWT front: `JwtKeys::verify` (HS256) on arbitrary token strings must refuse, never panic.
#![no_main]

use std::sync::LazyLock;

use confab_server::auth::JwtKeys;
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<JwtKeys> =
    LazyLock::new(|| JwtKeys::from_secret(&[7u8; 32]).expect("a 32-byte secret is accepted"));

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = KEYS.verify(token);
});
