#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::*;

const RECORD: &[u8] = b"REMOTE_ADDR=2001:db8::20\nREMOTE_PORT=51234\nSCRIPT_NAME=/echo\n\
SEC_WEBSOCKET_PROTOCOL=chat\nEARLY_DATA_LENGTH=3\n\nabc";

#[test]
fn a_whole_record_parses_at_once_and_not_before() {
    let layout = parse_record(RECORD, 16).unwrap().unwrap();
    assert_eq!(&RECORD[..layout.lines], &RECORD[..RECORD.len() - 4]);
    assert_eq!(layout.early, 3);
    for cut in 0..RECORD.len() {
        assert_eq!(parse_record(&RECORD[..cut], 16).unwrap(), None, "cut at {cut}");
    }
}

#[test]
fn malformed_records_are_refused() {
    let bad: &[&[u8]] = &[
        b"\n\n",
        b"REMOTE_ADDR=1\n\n",
        b"EARLY_DATA_LENGTH=x\n\n",
        b"EARLY_DATA_LENGTH=\n\n",
        b"EARLY_DATA_LENGTH=-1\n\n",
        b"EARLY_DATA_LENGTH=99999999999999999999999\n\n",
        b"NOEQUALS\nEARLY_DATA_LENGTH=0\n\n",
        b"=v\nEARLY_DATA_LENGTH=0\n\n",
    ];
    for b in bad {
        assert!(
            matches!(parse_record(b, 16), Err(HandoverError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
    assert!(matches!(
        parse_record(b"EARLY_DATA_LENGTH=1\n\nab", 16),
        Err(HandoverError::TrailingBytes)
    ));
}

#[test]
fn oversized_records_are_refused() {
    let long = vec![b'A'; MAX_RECORD_LINES];
    assert!(matches!(parse_record(&long, 16), Err(HandoverError::LinesTooLong)));
    // Just under the limit, still waiting for the empty line.
    assert_eq!(parse_record(&long[..MAX_RECORD_LINES - 1], 16).unwrap(), None);
    assert!(matches!(
        parse_record(b"EARLY_DATA_LENGTH=17\n\n", 16),
        Err(HandoverError::EarlyTooLong(17))
    ));
}

fn send_with_fd(sock: &UnixStream, data: &[u8], fd: Option<i32>) {
    let iov = [std::io::IoSlice::new(data)];
    let fds = fd.map(|f| [f]);
    let cmsg: Vec<ControlMessage<'_>> =
        fds.as_ref().map(|f| ControlMessage::ScmRights(f)).into_iter().collect();
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).unwrap();
}

#[test]
fn the_receiver_takes_the_descriptor_and_a_record_in_pieces() {
    let (gw, backend) = UnixStream::pair().unwrap();
    backend.set_nonblocking(true).unwrap();
    let (client_ours, client_theirs) = UnixStream::pair().unwrap();
    let mut rx = Receiver::new(16);
    assert!(rx.receive(&backend).unwrap().is_none());
    send_with_fd(&gw, &RECORD[..10], Some(client_theirs.as_raw_fd()));
    drop(client_theirs);
    assert!(rx.receive(&backend).unwrap().is_none());
    (&gw).write_all(&RECORD[10..]).unwrap();
    let Some(Taken::Direct(h)) = rx.receive(&backend).unwrap() else { panic!("no hand-over") };
    assert_eq!(h.value("SCRIPT_NAME"), Some("/echo"));
    assert_eq!(h.path(), Some("/echo"));
    assert_eq!(h.protocol(), Some("chat"));
    assert_eq!(h.query(), None);
    assert_eq!(h.peer(), Some("[2001:db8::20]:51234".parse().unwrap()));
    assert_eq!(h.early(), b"abc");
    // The descriptor is the other end of our pair.
    let mut client = UnixStream::from(h.client);
    (&client_ours).write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
}

#[test]
fn no_descriptor_means_relay_mode() {
    let (gw, backend) = UnixStream::pair().unwrap();
    backend.set_nonblocking(true).unwrap();
    (&gw).write_all(b"relayed bytes").unwrap();
    let mut rx = Receiver::new(16);
    let Some(Taken::Relay(first)) = rx.receive(&backend).unwrap() else { panic!("not relay") };
    assert_eq!(first, b"relayed bytes");
}

#[test]
fn a_record_without_descriptor_after_an_empty_start_or_an_early_close_fails() {
    let (gw, backend) = UnixStream::pair().unwrap();
    backend.set_nonblocking(true).unwrap();
    let (_a, b) = UnixStream::pair().unwrap();
    send_with_fd(&gw, b"EARLY_DATA_LENGTH=5\n\nab", Some(b.as_raw_fd()));
    drop(gw);
    let mut rx = Receiver::new(16);
    assert!(matches!(rx.receive(&backend), Err(HandoverError::Truncated)));

    let (gw, backend) = UnixStream::pair().unwrap();
    backend.set_nonblocking(true).unwrap();
    drop(gw);
    assert!(matches!(Receiver::new(16).receive(&backend), Err(HandoverError::Truncated)));
}

fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut v = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => v.push(0x80 | n as u8),
        n if n <= 0xffff => {
            v.push(0x80 | 126);
            v.extend((n as u16).to_be_bytes());
        }
        n => {
            v.push(0x80 | 127);
            v.extend((n as u64).to_be_bytes());
        }
    }
    v.extend(key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

const LIMITS: Limits = Limits { max_message: 1 << 20, max_queue: (1 << 20) + 64, read_len: 1024 };

/// Runs `ep` until the input is used up, echoing messages; returns what it saw.
fn pump(ep: &mut Endpoint<UnixStream>) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        let mut progress = ep.flush().unwrap();
        while let Some((ev, out)) = ep.next_incoming() {
            match ev {
                Incoming::Message(kind, data) => {
                    seen.push(format!("{kind:?} {}", data.len()));
                    assert!(out.send(kind, data));
                }
                Incoming::Closed(code) => seen.push(format!("closed {code:?}")),
                Incoming::Failed(e) => seen.push(format!("failed {}", e.close_code())),
            }
            progress = true;
        }
        progress |= ep.read().unwrap_or(false);
        if !progress || ep.is_done() {
            break;
        }
    }
    seen
}

fn read_all(mut s: &UnixStream) -> Vec<u8> {
    s.set_nonblocking(true).unwrap();
    let mut v = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return v,
            Ok(n) => v.extend_from_slice(&buf[..n]),
            Err(_) => return v,
        }
    }
}

#[test]
fn the_endpoint_echoes_early_and_fragmented_messages_and_answers_control_frames() {
    let (client, server) = UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    let early = masked(0x1, true, b"early");
    let mut ep = Endpoint::new(server, &early, LIMITS).unwrap();
    let big = vec![7u8; 5000];
    let mut input = masked(0x2, false, &big[..3000]);
    input.extend(masked(0x9, true, b"p"));
    input.extend(masked(0x0, true, &big[3000..]));
    input.extend(masked(0x1, true, b""));
    input.extend(masked(0x8, true, &1000u16.to_be_bytes()));
    (&client).write_all(&input).unwrap();
    let seen = pump(&mut ep);
    assert_eq!(seen, ["Text 5", "Binary 5000", "Text 0", "closed Some(1000)"]);
    let out = read_all(&client);
    let mut want = vec![0x81, 5];
    want.extend(b"early");
    want.extend([0x8a, 1, b'p', 0x82, 126, 0x13, 0x88]);
    want.extend(&big);
    want.extend([0x81, 0, 0x88, 2, 0x03, 0xe8]);
    assert_eq!(out, want);
    // Shut down after the close: the client sees the end.
    drop(client);
    pump(&mut ep);
    assert!(ep.is_done());
}

#[test]
fn protocol_errors_fail_with_their_codes() {
    for (input, code) in [
        (vec![0x81, 0x01, b'x'], 1002u16),            // unmasked
        (masked(0x1, true, &[0xff]), 1007),           // not UTF-8
        (masked(0x9, false, b""), 1002),              // fragmented ping
        (masked(0x0, true, b"x"), 1002),              // stray continuation
        (masked(0x2, true, &vec![0; 2 << 20]), 1009), // too big
    ] {
        let (client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut ep = Endpoint::new(server, &input, LIMITS).unwrap();
        let seen = pump(&mut ep);
        assert_eq!(seen, [format!("failed {code}")]);
        let out = read_all(&client);
        assert_eq!(out, [&[0x88, 2][..], &code.to_be_bytes()].concat());
    }
}

#[test]
fn a_server_close_waits_for_the_clients_and_discards_data() {
    let (client, server) = UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    let mut ep = Endpoint::new(server, &[], LIMITS).unwrap();
    ep.close(1001, "bye");
    assert!(!ep.send(DataKind::Text, b"late"));
    let mut input = masked(0x1, true, b"ignored");
    input.extend(masked(0x8, true, &1001u16.to_be_bytes()));
    (&client).write_all(&input).unwrap();
    assert_eq!(pump(&mut ep), ["closed Some(1001)"]);
    assert_eq!(read_all(&client), [0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']);
}

#[test]
fn the_queue_is_bounded() {
    let (_client, server) = UnixStream::pair().unwrap();
    let limits = Limits { max_queue: 100, ..LIMITS };
    let mut ep = Endpoint::new(server, &[], limits).unwrap();
    assert!(ep.send(DataKind::Binary, &[0; 98]));
    assert!(!ep.send(DataKind::Binary, &[]));
    assert_eq!(ep.pending(), 100);
}

#[test]
fn a_descriptor_after_the_first_bytes_or_two_at_once_are_refused() {
    let (_a, b) = UnixStream::pair().unwrap();
    // A second descriptor in the middle of the record.
    let (gw, backend) = UnixStream::pair().unwrap();
    backend.set_nonblocking(true).unwrap();
    send_with_fd(&gw, b"EARLY_DATA_", Some(b.as_raw_fd()));
    send_with_fd(&gw, b"LENGTH=0\n\n", Some(b.as_raw_fd()));
    let mut rx = Receiver::new(16);
    let got = rx.receive(&backend);
    assert!(matches!(got, Err(HandoverError::BadDescriptor(_))), "{got:?}");

    let (gw, backend) = UnixStream::pair().unwrap();
    backend.set_nonblocking(true).unwrap();
    let fds = [b.as_raw_fd(), b.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"EARLY_DATA_LENGTH=0\n\n")];
    sendmsg::<()>(
        gw.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    let got = Receiver::new(16).receive(&backend);
    assert!(matches!(got, Err(HandoverError::BadDescriptor(_))), "{got:?}");
}
