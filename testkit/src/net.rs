//! Ports for the backends, and short-lived probe connections.
//!
//! Redis, tansu, secantusdb and SeaweedFS are told their port and cannot report one the kernel
//! picked, so a free one is reserved just before they start (a restart reuses it). Confab needs
//! none of this: it binds port 0 and prints the address (see `confab`).
//!
//! The reserved ports lie below the kernel's ephemeral range (`ip_local_port_range`, 32768 and
//! up by default), where the kernel never picks one by itself: while a test has a server
//! stopped, its port must stay free for the restart, and in the ephemeral range it did not. A
//! client retrying the stopped server can connect a socket to itself there (TCP's simultaneous
//! open, when the kernel happens to pick the server's port as the source port), and any
//! listener on port 0 may get it; `redis-server` then failed its restart with "Address already
//! in use".

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::{Error, Result};

/// How long one probe may take to connect, and then to read or write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reserves free loopback ports: each is held by a listener until the `Ports` is dropped, so that
/// one reservation never hands out the same port twice. Drop it right before starting the server.
#[derive(Debug, Default)]
pub(crate) struct Ports {
    held: Vec<TcpListener>,
}

impl Ports {
    /// A free port.
    pub(crate) fn take(&mut self) -> Result<u16> {
        let listener = bind_reserved().map_err(Error::io("reserving a free loopback port"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("reserving a free loopback port"))?
            .port();
        self.held.push(listener);
        Ok(port)
    }

    /// A free port `p` such that `p + offset` is free too (servers that derive a second port).
    pub(crate) fn take_with_offset(&mut self, offset: u16) -> Result<u16> {
        for _ in 0..200 {
            let listener = bind_reserved().map_err(Error::io("reserving a free loopback port"))?;
            let port = listener
                .local_addr()
                .map_err(Error::io("reserving a free loopback port"))?
                .port();
            let Some(second) = port.checked_add(offset) else {
                continue;
            };
            if let Ok(second) = bind(second) {
                self.held.push(listener);
                self.held.push(second);
                return Ok(port);
            }
        }
        Err(Error::Io {
            what: format!("reserving a free loopback port pair {offset} apart"),
            source: io::Error::other("no free pair found"),
        })
    }
}

fn bind(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
}

/// Where reserved ports are picked: from 10000 up to the start of the kernel's ephemeral range.
fn reserved_range() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (10_000, ephemeral_start.max(10_001))
}

/// A listener on a free port of [`reserved_range`], picked at random (tests run in parallel,
/// in several processes); the kernel's own pick if none is found.
fn bind_reserved() -> io::Result<TcpListener> {
    let (low, high) = reserved_range();
    for _ in 0..1_000 {
        let span = u64::from(high - low);
        let port = low + u16::try_from(random() % span).unwrap_or(0);
        if let Ok(listener) = bind(port) {
            return Ok(listener);
        }
    }
    bind(0)
}

/// A random number: std's `RandomState` is keyed randomly per process and per call.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    hasher.finish()
}

/// A connection to a loopback port with probe timeouts set.
pub(crate) fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_lie_below_the_ephemeral_range() {
        let (low, high) = reserved_range();
        let mut ports = Ports::default();
        for _ in 0..20 {
            let port = ports.take().expect("a port");
            assert!((low..high).contains(&port), "{port} not in {low}..{high}");
        }
    }

    #[test]
    fn reserved_ports_are_distinct_and_paired() {
        let mut ports = Ports::default();
        let a = ports.take().expect("a");
        let b = ports.take().expect("b");
        let c = ports.take_with_offset(10_000).expect("c");
        assert!(a != b && b != c && a != c);
        assert!(bind(c).is_err() && bind(c + 10_000).is_err(), "still held");
        drop(ports);
        assert!(bind(c).is_ok() && bind(c + 10_000).is_ok(), "released");
    }
}
