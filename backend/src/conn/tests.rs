#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::*;
use wsgate::relay::record::{self, RecordHeader};

/// A fresh socket path (removed with its directory by the guard).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsb-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn sock(&self) -> PathBuf {
        self.0.join("s")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rec(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut v = RecordHeader { fin: true, opcode, len }.to_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [1u8, 2, 3, 4];
    let mut v = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

/// Polls `accept` for a while (the listener's poll needs the kernel to see the connection).
fn accept_soon(l: &mut Listener) -> Connection {
    for _ in 0..200 {
        match l.accept() {
            Ok(c) => return c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    panic!("no connection came");
}

/// Calls `recv` until it gives something other than `WouldBlock`, rendered.
fn recv_soon(c: &mut Connection) -> String {
    for _ in 0..200 {
        match c.recv() {
            Ok(Received::Message(kind, data)) => {
                return format!("{kind:?}:{}", String::from_utf8_lossy(data))
            }
            Ok(Received::Closed(code)) => return format!("closed:{code:?}"),
            Ok(Received::Failed(f)) => return format!("failed:{}", f.close_code()),
            Ok(Received::Done) => return "done".into(),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => return format!("error:{e}"),
        }
    }
    panic!("nothing came");
}

#[test]
fn framed_relay_waits_for_the_context_then_carries_types_and_codes() {
    let dir = TempDir::new();
    let mut options = Options::new(Mode::Framed, false);
    options.context = true;
    let mut l = Listener::bind(&dir.sock(), options).unwrap();
    let mut gw = UnixStream::connect(dir.sock()).unwrap();
    let mut bytes = rec(record::OP_CONTEXT, b"REMOTE_ADDR=::1\nREMOTE_PORT=7\nSCRIPT_NAME=/e\n");
    bytes.extend(rec(record::OP_TEXT, b"hi"));
    bytes.extend(rec(record::OP_BINARY, &[0, 1]));
    // The context in two pieces: nothing is handed out before it is whole.
    gw.write_all(&bytes[..9]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    gw.write_all(&bytes[9..]).unwrap();
    let mut c = accept_soon(&mut l);
    assert!(!c.is_direct());
    assert_eq!(c.peer(), "[::1]:7".parse().ok());
    assert_eq!(c.path(), Some("/e"));
    assert_eq!(recv_soon(&mut c), "Text:hi");
    assert_eq!(recv_soon(&mut c), "Binary:\0\u{1}");
    assert_eq!(c.recv().unwrap_err().kind(), ErrorKind::WouldBlock);

    c.send(Kind::Binary, b"abc").unwrap();
    c.close(4000, "bye").unwrap();
    assert!(c.is_closing());
    assert_eq!(c.send(Kind::Text, b"late").unwrap_err().kind(), ErrorKind::NotConnected);
    let mut got = Vec::new();
    gw.read_to_end(&mut got).unwrap(); // our side was shut down after the close record
    let mut want = rec(record::OP_BINARY, b"abc");
    want.extend(rec(record::OP_CLOSE, b"\x0f\xa0bye"));
    assert_eq!(got, want);
    drop(gw);
    assert_eq!(recv_soon(&mut c), "done");
}

#[test]
fn relay_close_record_is_answered_with_its_code() {
    let dir = TempDir::new();
    let mut l = Listener::bind(&dir.sock(), Options::new(Mode::Framed, false)).unwrap();
    let mut gw = UnixStream::connect(dir.sock()).unwrap();
    let mut c = accept_soon(&mut l);
    assert!(c.context().is_empty());
    gw.write_all(&rec(record::OP_CLOSE, b"\x0f\xa1x")).unwrap();
    assert_eq!(recv_soon(&mut c), "closed:Some(4001)");
    let mut got = Vec::new();
    gw.read_to_end(&mut got).unwrap();
    assert_eq!(got, rec(record::OP_CLOSE, b"\x0f\xa1"));
}

/// The gateway relays a client's close and closes its end at once, not reading our answer:
/// the kernel reports our write or read as a reset. That is the end, not a failure.
#[test]
fn a_gateway_gone_after_its_close_record_is_the_end_not_an_error() {
    let dir = TempDir::new();
    let mut l = Listener::bind(&dir.sock(), Options::new(Mode::Framed, false)).unwrap();
    let mut gw = UnixStream::connect(dir.sock()).unwrap();
    let mut c = accept_soon(&mut l);
    gw.write_all(&rec(record::OP_CLOSE, b"\x0f\xa3")).unwrap();
    assert_eq!(recv_soon(&mut c), "closed:Some(4003)");
    c.flush().unwrap();
    // Our answer lies unread in the gateway's socket when it closes: a reset for us.
    std::thread::sleep(std::time::Duration::from_millis(20));
    drop(gw);
    assert_eq!(recv_soon(&mut c), "done");
    assert!(c.is_done());
    // And when the answer is written only after the gateway is gone (EPIPE).
    let mut gw = UnixStream::connect(dir.sock()).unwrap();
    let mut c = accept_soon(&mut l);
    gw.write_all(&rec(record::OP_CLOSE, b"\x0f\xa3")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    drop(gw);
    assert_eq!(recv_soon(&mut c), "closed:Some(4003)");
    assert_eq!(recv_soon(&mut c), "done");
}

#[test]
fn stream_relay_messages_are_reads_and_an_end_is_a_close() {
    let dir = TempDir::new();
    let mut options = Options::new(Mode::Stream, false);
    options.context = true;
    let mut l = Listener::bind(&dir.sock(), options).unwrap();
    let mut gw = UnixStream::connect(dir.sock()).unwrap();
    gw.write_all(b"REMOTE_ADDR=10.0.0.1\nREMOTE_PORT=80\n\nhello").unwrap();
    let mut c = accept_soon(&mut l);
    assert_eq!(c.value("REMOTE_ADDR"), Some("10.0.0.1"));
    assert_eq!(recv_soon(&mut c), "Text:hello");
    gw.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(recv_soon(&mut c), "closed:None");
    assert_eq!(recv_soon(&mut c), "done");
}

#[test]
fn a_too_big_relayed_message_fails_with_1009() {
    let dir = TempDir::new();
    let mut options = Options::new(Mode::Framed, false);
    options.max_message = 4;
    let mut l = Listener::bind(&dir.sock(), options).unwrap();
    let mut gw = UnixStream::connect(dir.sock()).unwrap();
    let mut c = accept_soon(&mut l);
    gw.write_all(&rec(record::OP_TEXT, b"12345")).unwrap();
    assert_eq!(recv_soon(&mut c), "failed:1009");
    let mut got = Vec::new();
    gw.read_to_end(&mut got).unwrap();
    assert_eq!(got, rec(record::OP_CLOSE, b"\x03\xf1"));
}

fn send_with_fd(sock: &UnixStream, data: &[u8], fd: i32) {
    let iov = [std::io::IoSlice::new(data)];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).unwrap();
}

#[test]
fn direct_hand_over_with_early_bytes_ping_and_close() {
    let dir = TempDir::new();
    let mut l = Listener::bind(&dir.sock(), Options::new(Mode::Framed, true)).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
    let (server_side, peer) = tcp.accept().unwrap();

    let gw = UnixStream::connect(dir.sock()).unwrap();
    let early = frame(0x1, b"early");
    let mut head = format!(
        "REMOTE_ADDR={}\nREMOTE_PORT={}\nSCRIPT_NAME=/d\nEARLY_DATA_LENGTH={}\n\n",
        peer.ip(),
        peer.port(),
        early.len()
    )
    .into_bytes();
    head.extend_from_slice(&early);
    // The descriptor with the first bytes, the rest after: the listener waits for the whole.
    send_with_fd(&gw, &head[..5], server_side.as_raw_fd());
    drop(server_side);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    (&gw).write_all(&head[5..]).unwrap();
    let mut c = accept_soon(&mut l);
    assert!(c.is_direct());
    assert_eq!(c.peer(), Some(peer));
    assert_eq!(recv_soon(&mut c), "Text:early");

    client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    client.write_all(&frame(0x9, b"p")).unwrap(); // a ping: answered inside
    client.write_all(&frame(0x2, b"\x01\x02")).unwrap();
    assert_eq!(recv_soon(&mut c), "Binary:\u{1}\u{2}");
    let mut pong = [0u8; 3];
    client.read_exact(&mut pong).unwrap();
    assert_eq!(pong, [0x8a, 1, b'p']);

    c.send(Kind::Text, b"out").unwrap();
    let mut out = [0u8; 5];
    client.read_exact(&mut out).unwrap();
    assert_eq!(&out, b"\x81\x03out");

    client.write_all(&frame(0x8, b"\x03\xe8")).unwrap();
    assert_eq!(recv_soon(&mut c), "closed:Some(1000)");
    let mut close = Vec::new();
    client.read_to_end(&mut close).unwrap(); // the close, then the server's end (RFC 6455 §7.1.1)
    assert_eq!(close, b"\x88\x02\x03\xe8");
    drop(client);
    assert_eq!(recv_soon(&mut c), "done");
}

#[test]
fn bad_hand_overs_are_dropped_and_counted() {
    let dir = TempDir::new();
    let mut l = Listener::bind(&dir.sock(), Options::new(Mode::Framed, true)).unwrap();
    let mut gw = UnixStream::connect(dir.sock()).unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    send_with_fd(&gw, b"NOEQUALS\nEARLY_DATA_LENGTH=0\n\n", a.as_raw_fd());
    for _ in 0..50 {
        assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
        if l.rejected() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(l.rejected(), 1);
    let mut rest = Vec::new();
    gw.read_to_end(&mut rest).unwrap(); // the listener closed it
    assert!(rest.is_empty());
}

#[test]
fn direct_needs_a_stream_socket_and_a_close_code_must_be_valid() {
    let dir = TempDir::new();
    let err = Listener::bind(&dir.sock(), Options::new(Mode::SeqPacket, true)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!dir.sock().exists());

    let mut l = Listener::bind(&dir.sock(), Options::new(Mode::Framed, false)).unwrap();
    let _gw = UnixStream::connect(dir.sock()).unwrap();
    let mut c = accept_soon(&mut l);
    assert_eq!(c.close(1005, "").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(c.is_open());
    drop(l);
    assert!(!dir.sock().exists(), "the socket file is removed with the listener");
}
