//! No heap allocation in the gateway while established connections
//! relay 10,000 messages of mixed sizes, 1 MiB fragmented ones included.
//!
//! A counting global allocator counts only on the gateway's thread (a thread-local switch);
//! the clients run on other threads and the echo backend in its own process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unsafe_code
)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use common::counting::{Counting, ALLOCS, COUNTING};
use common::{noise, spawn_echo, Client, TempDir};
use wsgate::config::{Config, Site};
use wsgate::event_loop::Server;
use wsgate::relay::codec::Mode;

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENTS: usize = 8;
const MESSAGES_PER_CLIENT: usize = 1250;

#[test]
fn relaying_allocates_nothing() {
    let dir = TempDir::new("alloc");
    let _echo = spawn_echo(&dir.0, "echo", "framed", &["-M", "4M"]);
    let site = Site {
        listen: "127.0.0.1:0".parse().unwrap(),
        docroot: dir.0.clone(),
        mode: Mode::Framed,
        max_message: 4 << 20,
        ..Site::default()
    };
    let config = Config { verbosity: 0, ..Config::single(site) };
    // The server is built on its own thread so that its start-up allocations are counted too:
    // that shows the counter sees the gateway thread.
    let (tx, rx) = std::sync::mpsc::channel();
    let gateway = std::thread::spawn(move || {
        COUNTING.with(|g| g.set(true));
        let mut server = Server::bind(config).unwrap();
        tx.send((server.local_addr().unwrap(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();

    // Connect and exchange one message each, so that every path has run once.
    let established = Arc::new(Barrier::new(CLIENTS + 1));
    let measured = Arc::new(Barrier::new(CLIENTS + 1));
    let done = Arc::new(Barrier::new(CLIENTS + 1));
    let mut threads = Vec::new();
    for c in 0..CLIENTS {
        let (established, measured, done) = (established.clone(), measured.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let mut ws = Client::connect(addr, "/echo");
            ws.send(1, b"warm-up", 1000);
            assert_eq!(ws.recv(), (1, b"warm-up".to_vec()));
            established.wait();
            measured.wait();
            let mut relayed = 0;
            for m in 0..MESSAGES_PER_CLIENT {
                let seed = (c * MESSAGES_PER_CLIENT + m) as u64;
                let (opcode, payload, frag) = match m % 125 {
                    // A 1 MiB binary message in 64 KiB fragments, 10 per client.
                    0 => (2, noise(seed, 1 << 20), 64 << 10),
                    // Text, sizes around the 7/16/64-bit length boundaries.
                    k if k % 3 == 0 => (
                        1,
                        vec![b'a' + (k % 26) as u8; [0, 125, 126, 65535, 65536, 3000][k % 6]],
                        1 << 20,
                    ),
                    // Binary of mixed sizes, fragmented in odd sizes.
                    k => (2, noise(seed, (k * 997) % 40_000), 1 + (k * 131) % 9000),
                };
                ws.send(opcode, &payload, frag);
                let (op, echoed) = ws.recv();
                assert_eq!(op, opcode);
                assert!(
                    echoed == payload,
                    "client {c} message {m}: {} vs {} bytes",
                    echoed.len(),
                    payload.len()
                );
                relayed += 1;
            }
            done.wait();
            relayed
        }));
    }
    established.wait();
    let before = ALLOCS.load(Ordering::SeqCst);
    measured.wait();
    done.wait();
    let after = ALLOCS.load(Ordering::SeqCst);
    let relayed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    handle.stop();
    gateway.join().unwrap();
    assert_eq!(relayed, CLIENTS * MESSAGES_PER_CLIENT);
    assert!(before > 0, "the counter works: start-up allocated");
    assert_eq!(after - before, 0, "gateway allocations while relaying {relayed} messages");
}
