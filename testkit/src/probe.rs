//! Readiness checks: one real protocol round trip each, hand-rolled so that the testkit needs no
//! client crates.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::net::connect;

/// Redis: `PING` answered by `+PONG` (a server still loading answers `-LOADING`).
pub(crate) fn redis_ping(port: u16) -> io::Result<()> {
    let mut stream = connect(port)?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.trim_end() == "+PONG" {
        Ok(())
    } else {
        Err(io::Error::other(format!("PING answered {line:?}")))
    }
}

/// Kafka: an `ApiVersions` v0 request answered with the same correlation id and no error.
pub(crate) fn kafka_api_versions(port: u16) -> io::Result<()> {
    const API_VERSIONS: i16 = 18;
    const CORRELATION_ID: i32 = 0x00c0_fab0;
    let client_id = b"confab-testkit";
    let mut request = Vec::new();
    request.extend_from_slice(&API_VERSIONS.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes());
    request.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    request.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    request.extend_from_slice(client_id);

    let mut stream = connect(port)?;
    stream.write_all(&(request.len() as i32).to_be_bytes())?;
    stream.write_all(&request)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .map_err(|_| io::Error::other("negative response size"))?;
    if !(6..=1 << 20).contains(&size) {
        return Err(io::Error::other(format!("odd ApiVersions size {size}")));
    }
    let mut response = vec![0u8; size];
    stream.read_exact(&mut response)?;
    let correlation_id = i32::from_be_bytes([response[0], response[1], response[2], response[3]]);
    let error_code = i16::from_be_bytes([response[4], response[5]]);
    if correlation_id != CORRELATION_ID || error_code != 0 {
        return Err(io::Error::other(format!(
            "ApiVersions answered correlation id {correlation_id:#x}, error {error_code}"
        )));
    }
    Ok(())
}

/// MongoDB: `{ping: 1}` in an `OP_MSG`, answered with `ok: 1`.
pub(crate) fn mongo_ping(port: u16) -> io::Result<()> {
    const OP_MSG: i32 = 2013;
    let mut command = Vec::new();
    bson_int32(&mut command, "ping", 1);
    bson_string(&mut command, "$db", "admin");
    let document = bson_document(&command);

    let mut body = Vec::new();
    body.extend_from_slice(&0u32.to_le_bytes()); // flag bits
    body.push(0); // section kind 0: the command document
    body.extend_from_slice(&document);
    let mut message = Vec::new();
    message.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
    message.extend_from_slice(&1i32.to_le_bytes()); // request id
    message.extend_from_slice(&0i32.to_le_bytes()); // response to
    message.extend_from_slice(&OP_MSG.to_le_bytes());
    message.extend_from_slice(&body);

    let mut stream = connect(port)?;
    stream.write_all(&message)?;
    let mut header = [0u8; 16];
    stream.read_exact(&mut header)?;
    let length = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let op_code = i32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    let length = usize::try_from(length)
        .ok()
        .filter(|length| (16 + 5 + 5..=16 << 20).contains(length))
        .ok_or_else(|| io::Error::other(format!("odd reply length {length}")))?;
    if op_code != OP_MSG {
        return Err(io::Error::other(format!("reply op code {op_code}")));
    }
    let mut reply = vec![0u8; length - 16];
    stream.read_exact(&mut reply)?;
    // flag bits (4), section kind (1), then the reply document.
    match bson_number(&reply[5..], "ok") {
        Some(1.0) => Ok(()),
        other => Err(io::Error::other(format!("ping answered ok = {other:?}"))),
    }
}

/// S3: any HTTP response below 500 to `GET /` (without credentials it is an access error).
pub(crate) fn http_get(port: u16) -> io::Result<()> {
    match http_status(port, "/")? {
        status if status < 500 => Ok(()),
        status => Err(io::Error::other(format!("HTTP status {status}"))),
    }
}

/// Confab: `GET /ready` answered 200 (the store and the fan-out are up).
pub(crate) fn confab_ready(port: u16) -> io::Result<()> {
    match http_status(port, "/ready")? {
        200 => Ok(()),
        status => Err(io::Error::other(format!("/ready answered {status}"))),
    }
}

/// The status of an HTTP/1.1 `GET path`.
fn http_status(port: u16, path: &str) -> io::Result<u16> {
    let mut stream = connect(port)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    line.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {line:?}")))
}

fn bson_int32(out: &mut Vec<u8>, name: &str, value: i32) {
    out.push(0x10);
    bson_cstring(out, name);
    out.extend_from_slice(&value.to_le_bytes());
}

fn bson_string(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x02);
    bson_cstring(out, name);
    out.extend_from_slice(&((value.len() + 1) as i32).to_le_bytes());
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

fn bson_cstring(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

fn bson_document(elements: &[u8]) -> Vec<u8> {
    let mut document = Vec::with_capacity(elements.len() + 5);
    document.extend_from_slice(&((elements.len() + 5) as i32).to_le_bytes());
    document.extend_from_slice(elements);
    document.push(0);
    document
}

/// The numeric top-level field `name` of a BSON document, skipping the element types a `ping`
/// reply may carry before it.
fn bson_number(document: &[u8], name: &str) -> Option<f64> {
    let read_i32 = |at: usize| -> Option<i32> {
        Some(i32::from_le_bytes(
            document.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    let end = usize::try_from(read_i32(0)?).ok()?.min(document.len());
    let mut at = 4;
    while at < end {
        let kind = document[at];
        if kind == 0 {
            return None;
        }
        let name_end = at + 1 + document.get(at + 1..end)?.iter().position(|b| *b == 0)?;
        let key = std::str::from_utf8(&document[at + 1..name_end]).ok()?;
        let value = name_end + 1;
        let bytes = |n: usize| document.get(value..value + n);
        if key == name {
            return match kind {
                0x01 => Some(f64::from_le_bytes(bytes(8)?.try_into().ok()?)),
                0x10 => Some(f64::from(i32::from_le_bytes(bytes(4)?.try_into().ok()?))),
                0x12 => Some(i64::from_le_bytes(bytes(8)?.try_into().ok()?) as f64),
                _ => None,
            };
        }
        let size = match kind {
            0x01 | 0x09 | 0x11 | 0x12 => 8,
            0x02 | 0x0D | 0x0E => 4 + usize::try_from(read_i32(value)?).ok()?,
            0x03 | 0x04 => usize::try_from(read_i32(value)?).ok()?,
            0x05 => 5 + usize::try_from(read_i32(value)?).ok()?,
            0x07 => 12,
            0x08 => 1,
            0x0A | 0x06 | 0x7F | 0xFF => 0,
            0x10 => 4,
            0x13 => 16,
            _ => return None,
        };
        at = value + size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bson_numbers_are_found_after_other_fields() {
        let mut inner = Vec::new();
        bson_int32(&mut inner, "x", 7);
        let mut elements = Vec::new();
        bson_string(&mut elements, "note", "hello");
        elements.push(0x03);
        bson_cstring(&mut elements, "nested");
        elements.extend_from_slice(&bson_document(&inner));
        elements.push(0x11);
        bson_cstring(&mut elements, "operationTime");
        elements.extend_from_slice(&[0; 8]);
        elements.push(0x01);
        bson_cstring(&mut elements, "ok");
        elements.extend_from_slice(&1.0f64.to_le_bytes());
        let document = bson_document(&elements);
        assert_eq!(bson_number(&document, "ok"), Some(1.0));
        assert_eq!(bson_number(&document, "missing"), None);
        assert_eq!(bson_number(&document[..10], "ok"), None, "truncated");
    }

    #[test]
    fn probes_fail_on_a_closed_port() {
        let port = crate::net::Ports::default().take().expect("port");
        assert!(redis_ping(port).is_err());
        assert!(kafka_api_versions(port).is_err());
        assert!(mongo_ping(port).is_err());
        assert!(http_get(port).is_err());
    }
}
