//! The backend kit's integration-test helpers: the gateway's (tests/common/ at the top of the
//! repository: temp docroots, child processes, the WebSocket client, the counting allocator)
//! and the sample echo backend, whose binary belongs to this package.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/common/mod.rs"]
mod shared;

pub use shared::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `websocket_echo -R dir -n name -m mode` and waits for its socket.
pub fn spawn_echo(dir: &Path, name: &str, mode: &str, extra: &[&str]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_websocket_echo"))
        .args(["-R", dir.to_str().unwrap(), "-n", name, "-m", mode])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn websocket_echo");
    let sock = dir.join(name);
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "echo socket never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    Proc(child)
}
