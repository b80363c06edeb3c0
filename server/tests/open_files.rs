//! The server raises its soft open-files limit to the hard one at start: every connection is a
//! descriptor, and the common soft default of 1,024 is exhausted by a thousand idle clients.
//! Alone in its test binary, because it lowers the test process's own soft limit (which the
//! server inherits) and that must not starve other tests running beside it.

mod common;

use common::Server;
use rlimit::Resource;

#[tokio::test]
async fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
    let (_, hard) = Resource::NOFILE.get().expect("getrlimit");
    assert!(hard > 512, "a hard limit of {hard} is too low to test");
    Resource::NOFILE
        .set(512, hard)
        .expect("lower the soft limit");
    let server = Server::start().await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
        .expect("read /proc/PID/limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("open files line");
    // "Max open files   SOFT   HARD   files"
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], hard.to_string(), "{line}");
    assert_eq!(fields[4], hard.to_string(), "{line}");
}
