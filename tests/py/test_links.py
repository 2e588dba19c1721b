"""Links: endpoints whose backend the configuration names, a UNIX socket anywhere, a TCP
service (IPv4 and IPv6) or a serial line (a pty pair standing in for the device), from flags
and from an ouistiti config file."""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import termios
import threading
import time

import pytest

from harness import RawWS, build_request, gateway_bin, open_socket, read_response_head, ws_connect


class TcpEcho:
    """A TCP echo server on a thread: every byte back, per connection. `reset_on` bytes make it
    reset the connection (SO_LINGER 0) instead of echoing them."""

    def __init__(self, host: str = "127.0.0.1", reset_on: bytes | None = None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.reset_on = reset_on
        self.accepted = 0
        self.peers: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.peers.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c: socket.socket):
        try:
            while data := c.recv(65536):
                if self.reset_on is not None and self.reset_on in data:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.close()
                    return
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def tcp_echo():
    started: list[TcpEcho] = []

    def start(host: str = "127.0.0.1", **kw) -> TcpEcho:
        e = TcpEcho(host, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.close()


def echo_once(url: str, text: str) -> str:
    ws = ws_connect(url)
    try:
        ws.send(text)
        return ws.recv(timeout=5)
    finally:
        ws.close()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_links_ipv4_and_ipv6_relay(gateway, tcp_echo):
    v4 = tcp_echo("127.0.0.1")
    v6 = tcp_echo("::1")
    g = gateway(link=[f"echo4=tcp:127.0.0.1:{v4.port}", f"echo6=tcp:[::1]:{v6.port}"])
    assert echo_once(g.url("/echo4"), "over IPv4") == "over IPv4"
    assert echo_once(g.url("/echo6"), "over IPv6") == "over IPv6"
    # Below the origin: the same target (the rest of the path does not reach it).
    assert echo_once(g.url("/echo4/room/1"), "below") == "below"
    assert (v4.accepted, v6.accepted) == (2, 1)
    g.wait_line(r"open /echo6 mode=stream")


def test_a_link_matches_whole_segments_and_wins_over_the_docroot(gateway, tcp_echo, echo_backend):
    tcp = tcp_echo()
    echo_backend("stream", name="echo")
    echo_backend("stream", name="echoes")
    g = gateway(link=[f"echo=tcp:127.0.0.1:{tcp.port}"])
    assert echo_once(g.url("/echo"), "to tcp") == "to tcp"
    assert tcp.accepted == 1, "the link wins over the socket of the same name in the docroot"
    assert echo_once(g.url("/echoes"), "to the docroot") == "to the docroot"
    assert tcp.accepted == 1, "/echoes is not below /echo"


def test_a_unix_link_reaches_a_socket_outside_the_docroot(gateway, sandbox):
    outside = sandbox / "elsewhere.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(outside))
    srv.listen(4)
    g = gateway(link=[f"dev/echo=unix:{outside}"])

    def serve():
        c, _ = srv.accept()
        c.sendall(c.recv(100))
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert echo_once(g.url("/dev/echo"), "unix link") == "unix link"
    srv.close()


def test_a_tcp_target_that_refuses_answers_502_before_any_101(gateway):
    g = gateway(link=[f"down=tcp:127.0.0.1:{free_tcp_port()}"])
    s = open_socket(g.port)
    s.sendall(build_request(g.port, "/down"))
    r = read_response_head(s)
    assert r.status == 502
    s.close()
    g.wait_line(r"close /down refused 502: backend refused the connection")


def test_a_tcp_connect_that_does_not_finish_answers_504(gateway):
    # A listener that never accepts, its queue filled: the next SYNs go unanswered.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    time.sleep(0.2)
    g = gateway(link=[f"stuck=tcp:127.0.0.1:{port}"], handshake_timeout="1s")
    s = open_socket(g.port)
    start = time.monotonic()
    s.sendall(build_request(g.port, "/stuck"))
    r = read_response_head(s, timeout=5)
    assert r.status == 504
    assert 0.8 < time.monotonic() - start < 4
    s.close()
    g.wait_line(r"close /stuck refused 504: backend connect timed out")
    srv.close()
    for f in fillers:
        f.close()


def test_a_tcp_reset_mid_message_is_1011_and_bystanders_go_on(gateway, tcp_echo):
    tcp = tcp_echo(reset_on=b"RESET")
    g = gateway(link=[f"echo=tcp:127.0.0.1:{tcp.port}"])
    bystander = ws_connect(g.url("/echo"))
    victim = RawWS.connect(g.port, "/echo")
    victim.send_frame(0x1, b"before RESET after")
    frame, _ = victim.wait_close()
    assert frame is not None and frame.close_code == 1011
    victim.close()
    g.wait_line(r"close /echo backend error: ECONNRESET.*\(1011\)")
    bystander.send("still here")
    assert bystander.recv(timeout=5) == "still here"
    bystander.close()


def test_links_from_an_ouistiti_config_file(tmp_path, docroot, tcp_echo):
    tcp = tcp_echo()
    conf = tmp_path / "ouistiti.conf"
    conf.write_text(
        f"""
servers = ({{
    port = 0; addr = "127.0.0.1";
    websocket = {{
        docroot = "{docroot}";
        links = ( {{ origin = "mqtt"; type = "tcp"; destination = "127.0.0.1"; port = {tcp.port}; }},
                  {{ origin = "console"; type = "tty"; destination = "/dev/ttyS9"; baud = 9600; frame = "7E1"; }} );
    }};
}});
"""
    )
    check = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    assert f"tcp:127.0.0.1:{tcp.port}" in check.stdout
    assert 'type = "tty"; destination = "/dev/ttyS9"; baud = 9600; frame = "7E1";' in check.stdout
    from harness import Child, LISTEN_RE

    g = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    try:
        m = g.wait_line(LISTEN_RE, 10)
        port = int(m.group(2))
        assert echo_once(f"ws://127.0.0.1:{port}/mqtt", "via the file") == "via the file"
    finally:
        g.stop()


@pytest.mark.parametrize(
    "link, message",
    [
        ('origin = "s"; type = "fifo"; destination = "/run/in";', r':6:\d+: expected "source" in a link'),
        ('origin = "s"; type = "fifo"; destination = "/run/in"; source = "/run/in";', r':7:\d+: a fifo link needs two FIFOs'),
        ('origin = "s"; type = "udp"; destination = "x";', r':7:\d+: expected "unix", "tcp", "tty" or "exec"'),
        ('origin = "s"; type = "tty"; destination = "/dev/ttyS0"; frame = "9X1";', r':7:\d+: tty link settings'),
        ('origin = "s"; type = "tty"; destination = "/dev/ttyS0"; baud = 12345;', r':7:\d+: tty link settings'),
        ('origin = "s"; type = "tcp"; destination = "127.0.0.1";', r':6:\d+: expected "port" in a link'),
        ('origin = "s"; type = "unix"; destination = "";', r':7:\d+: a unix link needs a socket path'),
        ('origin = "../s"; destination = "/run/x.sock";', r':7:\d+: a link origin is a path'),
    ],
)
def test_a_link_wsgate_cannot_serve_is_a_config_error_at_its_line(tmp_path, docroot, link, message):
    conf = tmp_path / "bad.conf"
    conf.write_text(
        f"""servers = ({{
    port = 8080;
    websocket = {{
        docroot = "{docroot}";
        links = (
            {{
                {link}
            }}
        );
    }};
}});
"""
    )
    r = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    import re

    assert re.search(message, r.stderr), r.stderr


def read_fd(fd: int, want: int, timeout: float = 5.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            got += os.read(fd, 4096)
    return got


@pytest.fixture
def pty_line():
    """A pty pair standing in for a serial device: (master, slave fd, slave path)."""
    master, slave = os.openpty()
    yield master, slave, os.ttyname(slave)
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def test_a_tty_link_is_a_raw_line_at_its_speed_for_one_client_and_restored(gateway, pty_line):
    master, slave, path = pty_line
    attrs = termios.tcgetattr(slave)
    attrs[4] = attrs[5] = termios.B9600
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON, "the line starts cooked"
    g = gateway(link=[f"console=tty:{path}:115200,8N1"])
    ws = ws_connect(g.url("/console"))
    during = termios.tcgetattr(slave)
    assert (during[4], during[5]) == (termios.B115200, termios.B115200)
    assert not during[3] & (termios.ICANON | termios.ECHO | termios.ISIG), "raw: no line editing"
    assert not during[1] & termios.OPOST, "raw: no output processing"
    # Both ways, bytes unchanged (no CR/LF translation, no echo).
    ws.send("AT\r\n")
    assert read_fd(master, 4) == b"AT\r\n"
    os.write(master, b"login: ")
    assert ws.recv(timeout=5) == "login: "
    # One client at a time: the second is told the line is in use.
    s = open_socket(g.port)
    s.sendall(build_request(g.port, "/console"))
    assert read_response_head(s).status == 503
    s.close()
    g.wait_line(r"close /console refused 503: serial line in use")
    ws.close()
    g.wait_line(r"conn=0:\d+ .*close /console client closed")
    # Given back as it was found.
    deadline = time.monotonic() + 5
    while termios.tcgetattr(slave) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert termios.tcgetattr(slave) == before
    # And free for the next client.
    ws = ws_connect(g.url("/console"))
    ws.close()


def test_an_unplugged_tty_closes_its_client_1011(gateway, pty_line):
    master, _slave, path = pty_line
    g = gateway(link=[f"console=tty:{path}"])
    ws = RawWS.connect(g.port, "/console")
    ws.send_frame(0x1, b"hello")
    assert read_fd(master, 5) == b"hello"
    os.close(master)
    frame, _ = ws.wait_close()
    assert frame is not None and frame.close_code == 1011
    ws.close()
    g.wait_line(r"close /console backend error: EIO.*\(1011\)")


def test_a_missing_tty_is_404(gateway, sandbox):
    g = gateway(link=[f"console=tty:{sandbox}/ttyUSB9"])
    s = open_socket(g.port)
    s.sendall(build_request(g.port, "/console"))
    assert read_response_head(s).status == 404
    s.close()


def test_a_tcp_link_on_a_direct_site_is_refused(docroot):
    r = subprocess.run(
        [gateway_bin(), "-R", str(docroot), "-p", "0", "--direct", "--link", "x=tcp:127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert r.returncode == 2
    assert "direct mode hands the client's socket over a UNIX socket" in r.stderr


class FifoBackend:
    """A backend on a FIFO pair, on a thread: reads `<dir>/in`, answers upper-cased on
    `<dir>/out`; records what it read and whether it saw the end of its input."""

    def __init__(self, dir, reader: bool = True):
        self.to, self.frm = dir / "in", dir / "out"
        os.mkfifo(self.to)
        os.mkfifo(self.frm)
        self.read = b""
        self.eof = threading.Event()
        if reader:
            # Its input open first (a writer then finds a reader), its output once the gateway
            # opens it.
            self.fd_in = os.open(self.to, os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(self.fd_in, True)
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        out = os.open(self.frm, os.O_WRONLY)
        self.out = out
        while data := os.read(self.fd_in, 4096):
            self.read += data
            if b"QUIT" in data:
                os.close(out)
                return
            os.write(out, data.upper())
        self.eof.set()
        os.close(out)


def test_a_fifo_pair_relays_both_ways_for_one_client_at_a_time(gateway, sandbox):
    b = FifoBackend(sandbox)
    g = gateway(link=[f"pipe=fifo:{b.to}:{b.frm}"])
    ws = ws_connect(g.url("/pipe"))
    ws.send("hello fifo")
    assert ws.recv(timeout=5) == "HELLO FIFO"
    # One stream: a second client would mix its bytes into the first's.
    s = socket.create_connection(("127.0.0.1", g.port))
    s.sendall(build_request(g.port, "/pipe"))
    assert read_response_head(s).status == 503
    s.close()
    g.wait_line(r"close /pipe refused 503")
    ws.close()
    # The client's end is the end of the backend's input.
    assert b.eof.wait(5)
    assert b.read == b"hello fifo"


def test_a_fifo_backend_that_is_not_running_is_502_and_one_that_closes_ends_its_client(gateway, sandbox):
    (sandbox / "none").mkdir()
    nobody = FifoBackend(sandbox / "none", reader=False)
    g = gateway(link=[f"gone=fifo:{nobody.to}:{nobody.frm}", "missing=fifo:/nonexistent/a:/nonexistent/b"])
    s = socket.create_connection(("127.0.0.1", g.port))
    s.sendall(build_request(g.port, "/gone"))
    assert read_response_head(s).status == 502
    s.close()
    s = socket.create_connection(("127.0.0.1", g.port))
    s.sendall(build_request(g.port, "/missing"))
    assert read_response_head(s).status == 404
    s.close()

    (sandbox / "b").mkdir()
    b = FifoBackend(sandbox / "b")
    g2 = gateway(link=[f"pipe=fifo:{b.to}:{b.frm}"])
    ws = RawWS.connect(g2.port, "/pipe")
    ws.send_frame(0x1, b"QUIT")
    frame, _ = ws.wait_close()
    assert frame is not None and frame.close_code == 1000
    ws.close()
    g2.wait_line(r"close /pipe backend closed")


def test_a_fifo_link_from_the_config_file(tmp_path, docroot, sandbox):
    b = FifoBackend(sandbox)
    conf = tmp_path / "fifo.conf"
    conf.write_text(
        f"""servers = ({{ port = 0; addr = "127.0.0.1"; websocket = {{ docroot = "{docroot}";
    links = ( {{ origin = "pipe"; type = "fifo"; destination = "{b.to}"; source = "{b.frm}"; }} ); }}; }});
"""
    )
    check = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    assert f'type = "fifo"; destination = "{b.to}"; source = "{b.frm}";' in check.stdout
    from harness import Child, LISTEN_RE

    g = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    try:
        port = int(g.wait_line(LISTEN_RE, 10).group(2))
        assert echo_once(f"ws://127.0.0.1:{port}/pipe", "from the file") == "FROM THE FILE"
    finally:
        g.stop()
