//! Media file names and byte ranges: the file-name sanitizer, the `Content-Disposition` it feeds,
//! and the `Range` header parser with the range resolved against a few file sizes.
#![no_main]

use confab_server::media::parse_range;
use confab_storage::media::names::{content_disposition, safe_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = safe_name(text);
    // A sanitized name is stable and makes a header value.
    assert_eq!(safe_name(&name), name, "safe_name is idempotent");
    // Whatever the name, the header value is printable ASCII.
    for header in [
        content_disposition(&name, true),
        content_disposition(text, false),
    ] {
        assert!(
            header.bytes().all(|b| (b' '..=b'~').contains(&b)),
            "not a header value: {header:?}"
        );
    }
    if let Some(range) = parse_range(text) {
        for size in [0, 1, 10, u64::MAX] {
            if let Some(r) = range.resolve(size) {
                assert!(
                    r.start <= r.end && r.end <= size,
                    "{range:?} on {size}: {r:?}"
                );
            }
        }
    }
});
