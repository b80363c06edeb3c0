//! Ports for the backends, and short-lived probe connections.
//!
//! Redis, tansu, secantusdb and SeaweedFS are told their port and cannot report one the kernel
//! picked, so a free one is reserved just before they start (a restart reuses it). Confab needs
//! none of this: it binds port 0 and prints the address (see `confab`).

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
        let listener = bind(0).map_err(Error::io("reserving a free loopback port"))?;
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
            let listener = bind(0).map_err(Error::io("reserving a free loopback port"))?;
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
