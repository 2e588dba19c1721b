//! wss:// relaying, in process, with a counting allocator on the gateway thread: what rustls
//! costs per connection and per message, and that memory does not grow with traffic.
//!
//! Plain ws:// allocates nothing while relaying (backend/tests/zero_alloc.rs). Over TLS, rustls 0.23
//! allocates an owned buffer per record in each direction (decrypted plaintext is copied into a
//! `Vec`; every encrypted record is a `Vec`) and frees it once the bytes have moved on. This
//! test bounds that: at most two allocations per TLS record relayed plus one per message, and
//! the gateway thread's live heap after the traffic is what it was before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use common::counting::{Counting, ALLOCS, COUNTING, LIVE};
use common::{noise, spawn_echo, Client, TempDir};
use wsgate::config::{Config, Site};
use wsgate::event_loop::Server;
use wsgate::relay::codec::Mode;

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENTS: usize = 4;
const MESSAGES_PER_CLIENT: usize = 500;
/// TLS record payload limit (RFC 8446 §5.1).
const RECORD: usize = 16 * 1024;

#[test]
fn tls_relay_memory_is_bounded_per_record_and_does_not_grow() {
    let dir = TempDir::new("tlsrelay");
    let _echo = spawn_echo(&dir.0, "echo", "framed", &["-M", "4M"]);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let crt = dir.0.join("cert.pem");
    let key = dir.0.join("key.pem");
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.key_pair.serialize_pem()).unwrap();
    let ca = cert.cert.der().clone();
    let site = Site {
        listen: "127.0.0.1:0".parse().unwrap(),
        docroot: dir.0.clone(),
        mode: Mode::Framed,
        max_message: 4 << 20,
        tls: Some(
            wsgate::config::SiteTls::load(wsgate::tls::TlsFiles {
                crtfile: crt,
                keyfile: key,
                cachain: None,
                client_ca: None,
            })
            .unwrap(),
        ),
        ..Site::default()
    };
    let config = Config { verbosity: 0, ..Config::single(site) };
    let (tx, rx) = std::sync::mpsc::channel();
    let gateway = std::thread::spawn(move || {
        COUNTING.with(|g| g.set(true));
        let mut server = Server::bind(config).unwrap();
        tx.send((server.local_addr().unwrap(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();

    let idle_before = LIVE.load(Ordering::SeqCst);
    let connected = Arc::new(Barrier::new(CLIENTS + 1));
    let established = Arc::new(Barrier::new(CLIENTS + 1));
    let measured = Arc::new(Barrier::new(CLIENTS + 1));
    let done = Arc::new(Barrier::new(CLIENTS + 1));
    // Clients keep their connections until the counters are read.
    let read = Arc::new(Barrier::new(CLIENTS + 1));
    let mut threads = Vec::new();
    for c in 0..CLIENTS {
        let ca = ca.clone();
        let (connected, established, measured, done, read) =
            (connected.clone(), established.clone(), measured.clone(), done.clone(), read.clone());
        threads.push(std::thread::spawn(move || {
            let mut ws = Client::connect_tls(addr, "/echo", &ca);
            connected.wait();
            ws.send(1, b"warm-up", 1000);
            assert_eq!(ws.recv(), (1, b"warm-up".to_vec()));
            established.wait();
            measured.wait();
            let mut bytes = 0;
            for m in 0..MESSAGES_PER_CLIENT {
                let seed = (c * MESSAGES_PER_CLIENT + m) as u64;
                let (opcode, payload, frag) = match m % 50 {
                    0 => (2, noise(seed, 1 << 20), 64 << 10),
                    k if k % 3 == 0 => (
                        1,
                        vec![b'a' + (k % 26) as u8; [0, 125, 126, 65535, 65536, 3000][k % 6]],
                        1 << 20,
                    ),
                    k => (2, noise(seed, (k * 997) % 40_000), 1 + (k * 131) % 9000),
                };
                ws.send(opcode, &payload, frag);
                let (op, echoed) = ws.recv();
                assert_eq!(op, opcode);
                assert!(echoed == payload, "client {c} message {m}");
                bytes += payload.len();
            }
            done.wait();
            read.wait();
            bytes
        }));
    }
    connected.wait();
    // Handshakes done; the first message also settles the plaintext buffers.
    established.wait();
    let per_conn = (LIVE.load(Ordering::SeqCst) - idle_before) / CLIENTS as isize;
    let (allocs_before, live_before) = (ALLOCS.load(Ordering::SeqCst), LIVE.load(Ordering::SeqCst));
    measured.wait();
    done.wait();
    let (allocs_after, live_after) = (ALLOCS.load(Ordering::SeqCst), LIVE.load(Ordering::SeqCst));
    read.wait();
    let bytes: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    handle.stop();
    gateway.join().unwrap();

    let messages = CLIENTS * MESSAGES_PER_CLIENT;
    let allocs = allocs_after - allocs_before;
    // Each payload crosses TLS twice (in and out) in records of at most 16 KiB.
    let records = 2 * (bytes / RECORD + messages);
    println!(
        "heap per established TLS connection: {per_conn} B; {allocs} allocations for {messages} \
         messages ({bytes} B each way, >= {records} records): {:.2} per message, {:.2} per record; \
         live heap {live_before} -> {live_after} B",
        allocs as f64 / messages as f64,
        allocs as f64 / records as f64
    );
    assert!(per_conn > 0 && per_conn < 24 * 1024, "{per_conn} B of heap per idle TLS connection");
    assert!(allocs <= 2 * records + messages, "{allocs} allocations for {records} records");
    assert!(
        (live_after - live_before).abs() < 8 * 1024,
        "the gateway's live heap went from {live_before} to {live_after} B"
    );
}
