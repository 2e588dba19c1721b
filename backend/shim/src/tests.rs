#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
use super::*;

#[test]
fn head_need_grows_with_what_the_header_says() {
    assert_eq!(head_need(&[]), 2);
    assert_eq!(head_need(&[0x81]), 2);
    // masked text, 7-bit length: 2 + 4
    assert_eq!(head_need(&[0x81, 0x85]), 6);
    // 16-bit and 64-bit lengths
    assert_eq!(head_need(&[0x82, 0xfe]), 8);
    assert_eq!(head_need(&[0x82, 0xff]), 14);
    // a masked ping of 5 bytes: header and payload
    assert_eq!(head_need(&[0x89, 0x85]), 6);
    assert_eq!(head_need(&[0x89, 0x85, 1, 2, 3, 4]), 11);
    // a control frame claiming 126 bytes: only the header (the session refuses it)
    assert_eq!(head_need(&[0x89, 0xfe, 0, 126, 1, 2, 3, 4]), 8);
    // unmasked: no key expected (the session refuses it)
    assert_eq!(head_need(&[0x81, 0x05]), 2);
}

#[test]
fn only_unix_stream_sockets_are_listeners() {
    // WS_TEXT flips the process-wide type that the send test checks.
    let _serial = lock(&SERIAL);
    assert_eq!(on_socket(libc::AF_UNIX, libc::SOCK_STREAM, 0), (0, true));
    assert_eq!(on_socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0), (0, true));
    assert_eq!(on_socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0), (0, false));
    assert_eq!(on_socket(libc::AF_INET, libc::SOCK_STREAM, 0), (0, false));
    assert_eq!(on_socket(libc::AF_UNIX, libc::SOCK_STREAM, WS_AUTO), (0, true));
    assert!(!TEXT.load(Ordering::Relaxed) || settings().text.is_some());
    assert_eq!(on_socket(libc::AF_UNIX, libc::SOCK_STREAM, WS_TEXT), (0, true));
    assert!(TEXT.load(Ordering::Relaxed));
}

use std::io::Read as _;
use std::os::unix::net::UnixStream;

/// Tests that use connections run one at a time: the fork test moves the process-wide
/// fork counter, which decides who closes politely, and the socket test the message type.
static SERIAL: Mutex<()> = Mutex::new(());

/// A masked client frame (RFC 6455 §5.3).
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A connection over a socket pair: (the shim's side, its socket, the client's side, the
/// serialising guard).
fn pair(early: &[u8]) -> (Conn, UnixStream, UnixStream, MutexGuard<'static, ()>) {
    let guard = lock(&SERIAL);
    let (ours, client) = UnixStream::pair().unwrap();
    let conn = Conn::new(ours.as_raw_fd(), early).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (conn, ours, client, guard)
}

fn read_frame(client: &mut UnixStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    client.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            client.read_exact(&mut l).unwrap();
            usize::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            client.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => usize::from(n),
    };
    let mut p = vec![0u8; len];
    client.read_exact(&mut p).unwrap();
    (h[0], p)
}

#[test]
fn one_recv_is_one_message_early_bytes_first() {
    let (conn, _ours, mut client, _serial) = pair(&client_frame(true, 1, b"early"));
    let mut two = client_frame(true, 2, b"first");
    two.extend(client_frame(true, 1, b"second"));
    client.write_all(&two).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(conn.recv(&mut buf, false), Ok(Received::Bytes(5)));
    assert_eq!(&buf[..5], b"early");
    assert_eq!(conn.recv(&mut buf, false), Ok(Received::Bytes(5)));
    assert_eq!(&buf[..5], b"first");
    assert_eq!(conn.recv(&mut buf, false), Ok(Received::Bytes(6)));
    assert_eq!(&buf[..6], b"second");
    assert_eq!(conn.recv(&mut buf, true), Err(Errno::EAGAIN), "nothing at all: a real EAGAIN");
}

#[test]
fn fragments_join_and_small_buffers_take_parts() {
    let (conn, _ours, mut client, _serial) = pair(&[]);
    let mut frames = client_frame(false, 1, b"frag");
    frames.extend(client_frame(true, 9, b"in between"));
    frames.extend(client_frame(true, 0, b"ments"));
    client.write_all(&frames).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(conn.recv(&mut buf, false), Ok(Received::Bytes(9)));
    assert_eq!(&buf[..9], b"fragments");
    assert_eq!(read_frame(&mut client), (0x8a, b"in between".to_vec()));
    let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    client.write_all(&client_frame(true, 2, &big)).unwrap();
    let mut got = Vec::new();
    let mut small = [0u8; 1000];
    while got.len() < big.len() {
        let Received::Bytes(n) = conn.recv(&mut small, false).unwrap() else {
            panic!("a control-only answer")
        };
        got.extend_from_slice(&small[..n]);
    }
    assert_eq!(got, big);
}

#[test]
fn a_ping_alone_answers_eagain_and_a_close_ends_the_stream() {
    let (conn, _ours, mut client, _serial) = pair(&[]);
    client.write_all(&client_frame(true, 9, b"p")).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(conn.recv(&mut buf, false), Ok(Received::OnlyControl));
    assert_eq!(read_frame(&mut client), (0x8a, b"p".to_vec()));
    client.write_all(&client_frame(true, 8, &4000u16.to_be_bytes())).unwrap();
    assert_eq!(conn.recv(&mut buf, false), Ok(Received::Bytes(0)));
    assert_eq!(read_frame(&mut client), (0x88, 4000u16.to_be_bytes().to_vec()));
    assert_eq!(conn.recv(&mut buf, false), Ok(Received::Bytes(0)));
    assert_eq!(conn.send(b"late", 0), Err(Errno::EPIPE));
}

#[test]
fn protocol_errors_close_with_their_code() {
    for (bytes, code) in [
        (vec![0x81, 0x01, b'x'], 1002u16),      // unmasked
        (client_frame(true, 1, b"\xff"), 1007), // not UTF-8
        (client_frame(true, 3, b""), 1002),     // reserved opcode
        (client_frame(true, 0, b"x"), 1002),    // continuation outside a message
    ] {
        let (conn, _ours, mut client, _serial) = pair(&[]);
        client.write_all(&bytes).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(conn.recv(&mut buf, false), Ok(Received::Bytes(0)));
        assert_eq!(read_frame(&mut client), (0x88, code.to_be_bytes().to_vec()));
        // our side is shut down (the server closes TCP first)
        assert_eq!(client.read(&mut buf).unwrap(), 0);
    }
}

#[test]
fn send_is_one_frame_and_close_sends_1000() {
    let (conn, _ours, mut client, _serial) = pair(&[]);
    assert_eq!(conn.send(b"abc", 0), Ok(3));
    let big = vec![7u8; 100_000];
    let reader = std::thread::spawn(move || {
        let f = read_frame(&mut client);
        let g = read_frame(&mut client);
        let h = read_frame(&mut client);
        (f, g, h)
    });
    assert_eq!(conn.send(&big, 0), Ok(big.len()));
    assert_eq!(conn.send(b"", 0), Ok(0));
    conn.close();
    let (f, g, h) = reader.join().unwrap();
    let kind = if sends_text() { 0x81 } else { 0x82 };
    assert_eq!(f, (kind, b"abc".to_vec()));
    assert_eq!(g.1.len(), 100_000);
    assert_eq!(h, (0x88, 1000u16.to_be_bytes().to_vec()));
}

#[test]
fn a_forked_copy_closes_silently() {
    let (conn, _ours, mut client, _serial) = pair(&[]);
    on_fork();
    conn.close();
    client.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut b = [0u8; 4];
    assert!(client.read(&mut b).is_err(), "nothing was sent");
    conn.touch();
    conn.close();
    assert_eq!(read_frame(&mut client).0, 0x88);
}

#[test]
fn the_table_tracks_and_forgets() {
    for fd in [5, 31, 32, 63, 64, 1023] {
        assert!(!maybe_tracked(fd));
        insert(fd, Kind::Listen);
        assert!(maybe_tracked(fd) && !maybe_tracked(fd + 1));
        assert!(matches!(forget(fd), Some(Kind::Listen)));
        assert!(!maybe_tracked(fd));
    }
    assert!(lookup(100_000).is_none());
    insert(100_000, Kind::Listen);
    assert!(matches!(lookup(100_000), Some(Kind::Listen)));
    insert(100_000, Kind::Pending { nonblock: false, cloexec: false });
    assert!(matches!(lookup(100_000), Some(Kind::Pending { .. })));
    assert!(forget(100_000).is_some());
    assert!(lookup(100_000).is_none());
    assert!(forget(100_000).is_none());
}
