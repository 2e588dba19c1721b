//! End-to-end checks of the `websocket_echo` sample backend: the built binary is started in a
//! temporary docroot and driven by 20 concurrent clients per relay mode; then reached over TCP
//! (`--tcp`) and on the one connection it is started with (`--stdio`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;
use wsgate::relay::record::{RecordHeader, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_TEXT};

const CLIENTS: usize = 20;

/// A running `websocket_echo` in its own temporary docroot.
struct Backend {
    child: Child,
    /// Kept open so that the backend's stderr never becomes a broken pipe.
    stderr: BufReader<ChildStderr>,
    dir: PathBuf,
    path: PathBuf,
}

impl Backend {
    fn start(tag: &str, mode: &str, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("wsgate-echo-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The docroot itself is created by the backend.
        let mut child = Command::new(env!("CARGO_BIN_EXE_websocket_echo"))
            .args(["-R", dir.to_str().unwrap(), "-n", "echo", "-m", mode])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let path = dir.join("echo");
        assert_eq!(
            line.trim_end(),
            format!("websocket_echo: listening on {} ({mode})", path.display())
        );
        Self { child, stderr, dir, path }
    }

    /// The backend's next log line.
    fn log_line(&mut self) -> String {
        let mut line = String::new();
        self.stderr.read_line(&mut line).unwrap();
        line
    }

    /// SIGTERM: the backend must exit 0 and take its socket file with it.
    fn stop(mut self) {
        kill(Pid::from_raw(i32::try_from(self.child.id()).unwrap()), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(!self.path.exists(), "socket file left behind");
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Deterministic bytes that differ per client, so that crossed wires show.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8).collect()
}

fn timeouts(s: &UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
}

/// A byte-stream connection to the echo: UNIX or TCP.
trait Conn: Read + Write + Send + Sized {
    fn dup(&self) -> Self;
    fn half_close(&self);
    fn timeouts(&self);
}

impl Conn for UnixStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn half_close(&self) {
        self.shutdown(std::net::Shutdown::Write).unwrap();
    }
    fn timeouts(&self) {
        timeouts(self);
    }
}

impl Conn for TcpStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn half_close(&self) {
        self.shutdown(std::net::Shutdown::Write).unwrap();
    }
    fn timeouts(&self) {
        self.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        self.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    }
}

/// Sends `out` from a second thread while reading `want` bytes back, then expects EOF.
fn exchange<S: Conn>(stream: S, out: &[u8], want: usize, half_close: bool) -> Vec<u8> {
    stream.timeouts();
    let mut reader = stream.dup();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut writer = stream;
            writer.write_all(out).unwrap();
            if half_close {
                writer.half_close();
            }
        });
        let mut back = vec![0u8; want];
        reader.read_exact(&mut back).unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
        back
    })
}

#[test]
fn stream_echo_with_concurrent_clients() {
    let backend = Backend::start("stream", "stream", &[]);
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let path = &backend.path;
            scope.spawn(move || {
                // Several times the 64 KiB buffer, so the echo has to stream.
                let data = pattern(300_000 + c, c);
                let back = exchange(UnixStream::connect(path).unwrap(), &data, data.len(), true);
                assert!(back == data, "client {c}: echo differs");
            });
        }
    });
    backend.stop();
}

fn record(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut v = RecordHeader { fin, opcode, len }.to_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn framed_echo_of_split_megabyte_and_close() {
    // 1 MiB of payload plus 6 headers is over the default limit of 1 MiB.
    let backend = Backend::start("framed", "framed", &["-M", "2M"]);
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let path = &backend.path;
            scope.spawn(move || {
                // One 1 MiB binary message in records of uneven sizes, a 1-byte one among them.
                let message = pattern(1 << 20, c);
                let cuts = [0, 1, 70_000, 70_001, 400_000, 900_000, 1 << 20];
                let mut out = Vec::new();
                for (i, w) in cuts.windows(2).enumerate() {
                    let op = if i == 0 { OP_BINARY } else { OP_CONTINUATION };
                    let fin = w[1] == message.len();
                    out.extend(record(fin, op, &message[w[0]..w[1]]));
                }
                let mut close = 1000u16.to_be_bytes().to_vec();
                close.extend_from_slice(b"bye");
                out.extend(record(true, OP_CLOSE, &close));
                let echoed = out.len();
                // Whatever follows the close record is never answered.
                out.extend(record(true, OP_BINARY, b"after close"));
                let stream = UnixStream::connect(path).unwrap();
                let back = exchange(stream, &out, echoed, false);
                assert!(back == out[..echoed], "client {c}: echo differs");
            });
        }
    });
    backend.stop();
}

/// Reads until end of stream; a reset after the data counts as the end too (the backend
/// closes without reading the rest of an oversized message).
fn read_to_close(mut stream: &UnixStream) -> Vec<u8> {
    let mut back = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return back,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return back,
            Err(e) => panic!("read: {e}"),
        }
    }
}

const CLOSE_TOO_BIG: [u8; 7] = [0x88, 0, 0, 0, 2, 0x03, 0xf1];

#[test]
fn framed_whole_message_is_read_before_its_echo() {
    // Like kosoku: each client writes everything before it reads anything back. A backend
    // that echoed while the message still arrives would fill the socket buffers both ways and
    // the write would time out.
    let backend = Backend::start("whole", "framed", &["-M", "32M"]);
    std::thread::scope(|scope| {
        for c in 0..3 {
            let path = &backend.path;
            scope.spawn(move || {
                const RECORD: usize = 1 << 20;
                let message = pattern(20 * RECORD, c);
                let mut out = Vec::with_capacity(message.len() + 1024);
                for (i, part) in message.chunks(RECORD).enumerate() {
                    let op = if i == 0 { OP_BINARY } else { OP_CONTINUATION };
                    out.extend(record((i + 1) * RECORD == message.len(), op, part));
                }
                // A second, small message and a close record, written before the first echo
                // is read: they are answered after it, in order.
                out.extend(record(true, OP_TEXT, b"and a small one"));
                out.extend(record(true, OP_CLOSE, &1000u16.to_be_bytes()));
                let stream = UnixStream::connect(path).unwrap();
                timeouts(&stream);
                (&stream).write_all(&out).unwrap();
                let back = read_to_close(&stream);
                assert_eq!(back.len(), out.len(), "client {c}");
                assert!(back == out, "client {c}: echo differs");
            });
        }
    });
    backend.stop();
}

#[test]
fn framed_message_over_the_limit_gets_close_1009() {
    let mut backend = Backend::start("limit", "framed", &["-M", "1K"]);
    // Exactly 1024 bytes with its header: echoed.
    let fits = record(true, OP_BINARY, &pattern(1024 - 5, 1));
    // 605 + 505 bytes in two records: the second header takes it over the limit.
    let mut over = record(false, OP_TEXT, &[b'a'; 600]);
    over.extend(record(true, OP_CONTINUATION, &[b'b'; 500]));
    let stream = UnixStream::connect(&backend.path).unwrap();
    timeouts(&stream);
    (&stream).write_all(&fits).unwrap();
    let mut back = vec![0u8; fits.len()];
    (&stream).read_exact(&mut back).unwrap();
    assert_eq!(back, fits);
    (&stream).write_all(&over).unwrap();
    assert_eq!(read_to_close(&stream), CLOSE_TOO_BIG);
    let log = backend.log_line();
    assert!(log.contains("1110 bytes") && log.contains("close 1009"), "{log}");

    // A close record inside an unfinished message: everything before it comes back.
    let mut partial = record(false, OP_BINARY, b"unfinished");
    partial.extend(record(true, OP_CLOSE, b""));
    let back =
        exchange(UnixStream::connect(&backend.path).unwrap(), &partial, partial.len(), false);
    assert_eq!(back, partial);
    backend.stop();

    // The default limit is 1 MiB, headers included; the answer comes before the payload is
    // read, while the client is still writing.
    let mut backend = Backend::start("limit-default", "framed", &[]);
    let big = record(true, OP_BINARY, &pattern(1 << 20, 2));
    let stream = UnixStream::connect(&backend.path).unwrap();
    timeouts(&stream);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Fails with EPIPE or a reset once the backend has closed: expected.
            let _ = (&stream).write_all(&big);
        });
        assert_eq!(read_to_close(&stream), CLOSE_TOO_BIG);
    });
    let log = backend.log_line();
    assert!(log.contains("1048581 bytes") && log.contains("1048576-byte limit"), "{log}");
    // The backend carries on.
    let ok = record(true, OP_BINARY, b"still here");
    let back = exchange(UnixStream::connect(&backend.path).unwrap(), &ok, ok.len(), true);
    assert_eq!(back, ok);
    backend.stop();
}

#[test]
fn framed_malformed_record_closes_the_connection() {
    let backend = Backend::start("malformed", "framed", &[]);
    let stream = UnixStream::connect(&backend.path).unwrap();
    timeouts(&stream);
    (&stream).write_all(&[0x83, 0, 0, 0, 0]).unwrap();
    let mut rest = Vec::new();
    (&stream).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // The backend itself carries on.
    let data = b"still here".to_vec();
    let ok = record(true, OP_BINARY, &data);
    let back = exchange(UnixStream::connect(&backend.path).unwrap(), &ok, ok.len(), true);
    assert_eq!(back, ok);
    backend.stop();
}

fn seqpacket_connect(path: &std::path::Path) -> OwnedFd {
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
        .unwrap();
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    let tv = nix::sys::time::TimeVal::new(20, 0);
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &tv).unwrap();
    fd
}

#[test]
fn seqpacket_echo_keeps_packets_whole() {
    let backend = Backend::start("seqpacket", "seqpacket", &[]);
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let path = &backend.path;
            scope.spawn(move || {
                let fd = seqpacket_connect(path);
                let mut back = vec![0u8; 70_000];
                for (i, len) in [1, 5, 1000, 65_536, 4096, 2].into_iter().enumerate() {
                    let packet = pattern(len, c * 10 + i);
                    let sent = socket::send(fd.as_raw_fd(), &packet, MsgFlags::MSG_NOSIGNAL);
                    assert_eq!(sent.unwrap(), len);
                    let n = socket::recv(fd.as_raw_fd(), &mut back, MsgFlags::empty()).unwrap();
                    assert!(back[..n] == packet[..], "client {c}: packet {i} differs");
                }
                // Closing our end is EOF for the backend; it closes too.
                socket::shutdown(fd.as_raw_fd(), socket::Shutdown::Write).unwrap();
                let n = socket::recv(fd.as_raw_fd(), &mut back, MsgFlags::empty()).unwrap();
                assert_eq!(n, 0);
            });
        }
    });
    // A packet larger than the 64 KiB buffer is refused by closing, not cut.
    let fd = seqpacket_connect(&backend.path);
    socket::send(fd.as_raw_fd(), &pattern(70_000, 1), MsgFlags::MSG_NOSIGNAL).unwrap();
    let mut back = vec![0u8; 16];
    assert_eq!(socket::recv(fd.as_raw_fd(), &mut back, MsgFlags::empty()).unwrap(), 0);
    backend.stop();
}

#[test]
fn second_instance_is_refused_and_stale_socket_replaced() {
    let backend = Backend::start("twice", "stream", &[]);
    let dir = backend.dir.clone();
    let out = Command::new(env!("CARGO_BIN_EXE_websocket_echo"))
        .args(["-R", dir.to_str().unwrap(), "-n", "echo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("address in use"));
    drop(backend);

    // A dead socket file left at the path (as after kill -9) is replaced.
    std::fs::create_dir_all(&dir).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.join("echo")).unwrap());
    let backend = Backend::start("twice", "stream", &[]);
    let back = exchange(UnixStream::connect(&backend.path).unwrap(), b"again", 5, true);
    assert_eq!(back, b"again");
    backend.stop();
}

#[test]
fn user_option_drops_privileges_for_real() {
    // The test suite runs as root (scripts/test.sh installs packages too): a privilege drop
    // that cannot be checked is a failure, not a pass.
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (the test suite runs as root)");
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        panic!("this test needs the user nobody");
    };
    let backend = Backend::start("user", "stream", &["-u", "nobody"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", backend.child.id())).unwrap();
    let ids = |key: &str| -> Vec<u32> {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect()
    };
    assert_eq!(ids("Uid:"), vec![nobody.uid.as_raw(); 4]);
    assert_eq!(ids("Gid:"), vec![nobody.gid.as_raw(); 4]);
    assert!(!ids("Groups:").contains(&0));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(&backend.path).unwrap();
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    let back = exchange(UnixStream::connect(&backend.path).unwrap(), b"hi", 2, true);
    assert_eq!(back, b"hi");
    // No stop(): the unprivileged backend cannot unlink in a root-owned docroot; Drop cleans up.
}

/// A `websocket_echo --tcp` listening on a port the system picked (`HOST:0`).
struct TcpBackend {
    child: Child,
    _stderr: BufReader<ChildStderr>,
    addr: SocketAddr,
    /// The `-R` given: never made with `--tcp`.
    root: PathBuf,
}

impl TcpBackend {
    fn start(tag: &str, host: &str, mode: &str) -> Self {
        let root = std::env::temp_dir().join(format!("wsgate-echo-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut child = Command::new(env!("CARGO_BIN_EXE_websocket_echo"))
            .args(["-R", root.to_str().unwrap(), "--tcp", &format!("{host}:0"), "-m", mode])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let rest = line.trim_end().strip_prefix("websocket_echo: listening on ").expect(&line);
        let (addr, said_mode) = rest.split_once(' ').unwrap();
        assert_eq!(said_mode, format!("({mode})"));
        let addr: SocketAddr = addr.parse().unwrap();
        assert_eq!(addr.ip(), host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().unwrap());
        assert_ne!(addr.port(), 0);
        Self { child, _stderr: stderr, addr, root }
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).unwrap()
    }

    /// SIGTERM: exit 0, and no socket file or docroot was ever made.
    fn stop(mut self) {
        kill(Pid::from_raw(i32::try_from(self.child.id()).unwrap()), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(!self.root.exists(), "--tcp made {}", self.root.display());
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message of `len` bytes in records of uneven sizes (a 1-byte one among them), then a
/// close record: what a gateway in framed mode sends for it. Returns the bytes and how many of
/// them come back (all: the close record is echoed too).
fn framed_message_and_close(len: usize, seed: usize) -> Vec<u8> {
    let message = pattern(len, seed);
    let cuts = [0, 1, len / 15, len / 15 + 1, len / 3, len / 2, len];
    let mut out = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let op = if i == 0 { OP_BINARY } else { OP_CONTINUATION };
        out.extend(record(w[1] == len, op, &message[w[0]..w[1]]));
    }
    out.extend(record(true, OP_TEXT, "and some text ✓".as_bytes()));
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    out.extend(record(true, OP_CLOSE, &close));
    out
}

#[test]
fn tcp_echo_with_concurrent_clients_in_stream_and_framed_modes() {
    let backend = TcpBackend::start("tcp-stream", "127.0.0.1", "stream");
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let backend = &backend;
            scope.spawn(move || {
                // Several times the 64 KiB buffer, so the echo has to stream.
                let data = pattern(300_000 + c, c);
                let back = exchange(backend.connect(), &data, data.len(), true);
                assert!(back == data, "client {c}: echo differs");
            });
        }
    });
    backend.stop();

    let backend = TcpBackend::start("tcp-framed", "127.0.0.1", "framed");
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let backend = &backend;
            scope.spawn(move || {
                // Just under the default limit of 1 MiB, headers included.
                let out = framed_message_and_close((1 << 20) - 100, c);
                let back = exchange(backend.connect(), &out, out.len(), false);
                assert!(back == out, "client {c}: echo differs");
            });
        }
    });
    backend.stop();
}

#[test]
fn tcp_echo_over_ipv6() {
    let backend = TcpBackend::start("tcp-v6", "[::1]", "lines");
    let back = exchange(backend.connect(), b"one\ntwo\n", 8, true);
    assert_eq!(back, b"one\ntwo\n");
    backend.stop();
}

#[test]
fn accepted_tcp_connections_have_nodelay() {
    let backend = TcpBackend::start("tcp-nodelay", "127.0.0.1", "framed");
    // Two small messages in one write, 100 times: the echo writes them one after the other.
    // With Nagle's algorithm on the backend's socket, the second echo waits until the first
    // is acknowledged, and the client, which sends nothing until it has both, delays its ACK
    // (40 ms on Linux once past the first segments): seconds in all instead of milliseconds.
    let mut s = backend.connect();
    s.set_nodelay(true).unwrap();
    s.timeouts();
    let start = std::time::Instant::now();
    let mut back = [0u8; 12];
    for i in 0..100u8 {
        let mut two = record(true, OP_BINARY, &[i]);
        two.extend(record(true, OP_TEXT, b"x"));
        s.write_all(&two).unwrap();
        s.read_exact(&mut back).unwrap();
        assert_eq!(back[..], two[..]);
    }
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1500), "100 round trips took {took:?}");
    drop(s);
    backend.stop();
}

/// Runs `websocket_echo` with `args` to its end; its exit code and stderr.
fn run_to_end(args: &[&str], stdin: Stdio) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_websocket_echo"))
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn tcp_refuses_seqpacket_direct_and_stdio_before_making_anything() {
    let root = std::env::temp_dir().join(format!("wsgate-echo-{}-tcp-refused", std::process::id()));
    let r = root.to_str().unwrap();
    for (args, said) in [
        (
            &["--tcp", "127.0.0.1:0", "-m", "seqpacket"][..],
            "-m seqpacket needs a UNIX SOCK_SEQPACKET socket",
        ),
        (
            &["--tcp", "127.0.0.1:0", "-d"][..],
            "direct mode (-d) takes the client's socket over a UNIX connection",
        ),
        (&["--tcp", "127.0.0.1:0", "--stdio"][..], "--tcp and --stdio exclude each other"),
        (&["--tcp", "localhost:9001"][..], "is not an IP address and port"),
        (&["--tcp", "127.0.0.1"][..], "is not an IP address and port"),
    ] {
        let (code, stderr) = run_to_end(&[&["-R", r], args].concat(), Stdio::null());
        assert_ne!(code, Some(0), "{args:?}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert!(!root.exists(), "{args:?} made {}", root.display());
    }
    // A port that is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_to_end(&["--tcp", &addr], Stdio::null());
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&format!("--tcp: {addr}: bind: ")), "{stderr}");
}

/// A `websocket_echo --stdio` started with `ours` as its standard input and output.
fn stdio_echo(ours: OwnedFd, root: &Path, args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    let out = ours.try_clone().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_websocket_echo"))
        .args(["-R", root.to_str().unwrap(), "--stdio"])
        .args(args)
        .stdin(Stdio::from(ours))
        .stdout(Stdio::from(out))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("websocket_echo: serving standard input ("), "{line}");
    (child, stderr)
}

/// Waits for the child to exit by itself (10 s at most); its status.
fn exits_by_itself(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..1000 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("websocket_echo --stdio did not exit when its connection ended");
}

fn stdio_root(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("wsgate-echo-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

#[test]
fn stdio_serves_its_one_connection_and_exits_when_it_ends() {
    // framed: a message of almost 1 MiB, a text, a close; the echo closes after the close
    // record and exits 0.
    let root = stdio_root("stdio-framed");
    let (mine, theirs) = UnixStream::pair().unwrap();
    let (mut child, _stderr) = stdio_echo(OwnedFd::from(theirs), &root, &["-m", "framed", "-v"]);
    let out = framed_message_and_close((1 << 20) - 100, 3);
    let back = exchange(mine, &out, out.len(), false);
    assert!(back == out, "echo differs");
    assert!(exits_by_itself(&mut child).success());
    assert!(!root.exists(), "--stdio made {}", root.display());

    // stream: the peer's end of stream ends it.
    let (mine, theirs) = UnixStream::pair().unwrap();
    let (mut child, _stderr) = stdio_echo(OwnedFd::from(theirs), &root, &["-m", "stream"]);
    let data = pattern(300_000, 4);
    assert!(exchange(mine, &data, data.len(), true) == data, "echo differs");
    assert!(exits_by_itself(&mut child).success());
    assert!(!root.exists());
}

#[test]
fn stdio_seqpacket_keeps_packets_whole() {
    let root = stdio_root("stdio-seqpacket");
    let (mine, theirs) =
        socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .unwrap();
    let tv = nix::sys::time::TimeVal::new(20, 0);
    socket::setsockopt(&mine, socket::sockopt::ReceiveTimeout, &tv).unwrap();
    let (mut child, _stderr) = stdio_echo(theirs, &root, &["-m", "seqpacket"]);
    let mut back = vec![0u8; 70_000];
    for (i, len) in [1, 5, 1000, 65_536, 2].into_iter().enumerate() {
        let packet = pattern(len, i);
        assert_eq!(socket::send(mine.as_raw_fd(), &packet, MsgFlags::MSG_NOSIGNAL).unwrap(), len);
        let n = socket::recv(mine.as_raw_fd(), &mut back, MsgFlags::empty()).unwrap();
        assert!(back[..n] == packet[..], "packet {i} differs");
    }
    drop(mine);
    assert!(exits_by_itself(&mut child).success());
    assert!(!root.exists());
}

#[test]
fn stdio_takes_a_tcp_connection_as_inetd_gives_it() {
    let root = stdio_root("stdio-tcp");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mine = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    let (mut child, _stderr) = stdio_echo(OwnedFd::from(theirs), &root, &["-m", "lines"]);
    let data = pattern(200_000, 5);
    assert!(exchange(mine, &data, data.len(), true) == data, "echo differs");
    assert!(exits_by_itself(&mut child).success());
}

#[test]
fn stdio_ends_on_sigterm_too() {
    let root = stdio_root("stdio-term");
    let (mine, theirs) = UnixStream::pair().unwrap();
    let (mut child, _stderr) = stdio_echo(OwnedFd::from(theirs), &root, &["-m", "stream"]);
    kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), Signal::SIGTERM).unwrap();
    assert!(exits_by_itself(&mut child).success());
    // Its end is closed with it.
    timeouts(&mine);
    let mut rest = Vec::new();
    (&mine).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn stdio_refuses_what_is_not_a_socket_or_does_not_fit_the_mode() {
    let root = stdio_root("stdio-refused");
    let r = root.to_str().unwrap();
    let (code, stderr) = run_to_end(&["-R", r, "--stdio"], Stdio::null());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--stdio: needs a socket on stdin"), "{stderr}");
    let (_r, w) = nix::unistd::pipe().unwrap();
    let (code, stderr) = run_to_end(&["-R", r, "--stdio"], Stdio::from(w));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--stdio: needs a socket on stdin"), "{stderr}");

    let stream = || OwnedFd::from(UnixStream::pair().unwrap().1);
    let seqpacket = || {
        socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::empty())
            .unwrap()
            .1
    };
    let tcp = || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _mine = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        OwnedFd::from(listener.accept().unwrap().0)
    };
    let datagram = || {
        socket::socketpair(AddressFamily::Unix, SockType::Datagram, None, SockFlag::empty())
            .unwrap()
            .1
    };
    for (fd, args, said) in [
        (stream(), &["-m", "seqpacket"][..], "-m seqpacket needs a SOCK_SEQPACKET socket"),
        (
            seqpacket(),
            &["-m", "framed"][..],
            "a SOCK_SEQPACKET socket, which -m framed does not read",
        ),
        (
            tcp(),
            &["-m", "framed", "-d"][..],
            "direct mode takes the client's socket over a UNIX stream",
        ),
        (datagram(), &["-m", "stream"][..], "standard input is a datagram socket"),
        (OwnedFd::from(TcpListener::bind("127.0.0.1:0").unwrap()), &[][..], "a listening socket"),
    ] {
        let (code, stderr) = run_to_end(&[&["-R", r, "--stdio"], args].concat(), Stdio::from(fd));
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
    assert!(!root.exists());
}
