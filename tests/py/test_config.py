"""wsgate -f: a ouistiti-style configuration with two servers (one on ::1), routing,
allow/deny/denylast, --check, SIGHUP reload and SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from harness import (
    LISTEN_RE,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Child,
    RawWS,
    echo_bin,
    free_port,
    gateway_bin,
    raw_handshake,
    recv_exact,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus



def write_config(path, docroot, p4, p6, allow6="nothing"):
    path.write_text(f"""
# two servers, as ouistiti would have them
user = "";
servers = ({{
    hostname = "a.local";
    addr = "127.0.0.1";
    port = {p4};
    keepalivetimeout = 5;
    document = {{ docroot = "{docroot}/../htdocs"; defaultpage = "index.html"; deny = "^/private"; }};
    websocket = {{ docroot = "{docroot}"; allow = "*"; denylast = true; mode = "framed"; }};
}},{{
    addr = "::1";
    port = {p6};
    websocket = {{ docroot = "{docroot}"; allow = "{allow6}"; deny = "*"; denylast = true; mode = "framed"; }};
    unknown_module = {{ x = 1; }};
}});
""")


@pytest.fixture
def two_servers(tmp_path, docroot):
    htdocs = docroot.parent / "htdocs"
    (htdocs / "private").mkdir(parents=True, exist_ok=True)
    (htdocs / "index.html").write_text("<p>ui</p>")
    (htdocs / "private" / "x.txt").write_text("no")
    echo = Child([echo_bin(), "-R", str(docroot), "-n", "echo", "-m", "framed"], "echo")
    deadline = time.monotonic() + 5
    while not (docroot / "echo").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    p4, p6 = free_port(), free_port(socket.AF_INET6, "::1")
    conf = tmp_path / "wsgate.conf"
    write_config(conf, docroot, p4, p6)
    g = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    g.wait_line(rf"listening on \[::1\]:{p6}", 5)
    yield g, conf, p4, p6, docroot
    g.stop()
    echo.stop()
    print(g.log_text())


def echo_once(ws, url, text="hi"):
    c = ws(url)
    c.send(text)
    assert c.recv(timeout=5) == text
    return c


def test_two_listeners_routing_and_acl(two_servers, ws):
    g, conf, p4, p6, _ = two_servers
    echo_once(ws, f"ws://127.0.0.1:{p4}/echo")
    # ::1 allows only "nothing" with deny "*" evaluated last: /echo is refused.
    with pytest.raises(InvalidStatus) as refused:
        ws(f"ws://[::1]:{p6}/echo")
    assert refused.value.response.status_code == 403
    assert raw_handshake(p4, "/missing")[0] == 404
    # Static pages of the first server, with its document deny list.
    import urllib.request, urllib.error
    page = urllib.request.urlopen(f"http://127.0.0.1:{p4}/", timeout=5)
    assert page.status == 200 and page.read() == b"<p>ui</p>"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"http://127.0.0.1:{p4}/private/x.txt", timeout=5)
    assert denied.value.code == 403
    # The unknown module was a warning naming file and line, not an error.
    assert f"{conf}:" in g.log_text() and "unknown_module" in g.log_text()


def test_sighup_reload_keeps_open_connections(two_servers, ws):
    g, conf, p4, p6, docroot = two_servers
    open_conn = echo_once(ws, f"ws://127.0.0.1:{p4}/echo")
    write_config(conf, docroot, p4, p6, allow6="echo")
    mark = len(g.lines)
    g.proc.send_signal(signal.SIGHUP)
    g.wait_line("configuration reloaded", 5, start=mark)
    echo_once(ws, f"ws://[::1]:{p6}/echo")  # the new allow list applies
    open_conn.send("still")
    assert open_conn.recv(timeout=5) == "still"  # the old connection survived
    # A broken new config is refused; the old one stays.
    conf.write_text("servers = ( { port = \"x\"; } );\n")
    mark = len(g.lines)
    g.proc.send_signal(signal.SIGHUP)
    g.wait_line("refused, the old one stays", 5, start=mark)
    echo_once(ws, f"ws://[::1]:{p6}/echo")


def test_sigterm_sends_1001_and_exits_0(two_servers, ws):
    g, _, p4, _, _ = two_servers
    c = echo_once(ws, f"ws://127.0.0.1:{p4}/echo")
    g.proc.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as closed:
        c.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert g.proc.wait(5) == 0


def test_check_prints_effective_config(tmp_path, docroot):
    conf = tmp_path / "c.conf"
    write_config(conf, docroot, 18080, 18081)
    out = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert "port = 18080" in out.stdout and "ping_interval" in out.stdout
    conf.write_text('servers = ({ port = 80; websocket = { docroot = 5; }; });\n')
    out = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2
    assert f"{conf}:1:" in out.stderr


# ---- reloaded timers ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (/proc/PID/stat utime and stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # fields[0] is the state (field 3 of proc(5)): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_timers(path, docroot, **websocket) -> None:
    keys = "".join(f" {k} = {v};" for k, v in websocket.items())
    path.write_text(
        'user = "";\n'
        f'servers = ({{ addr = "127.0.0.1"; port = 0;'
        f' websocket = {{ docroot = "{docroot}";{keys} }}; }});\n'
    )


def start_from_file(conf):
    g = Child([gateway_bin(), "-f", str(conf), "--log-rate", "0"], "wsgate")
    g.port = int(g.wait_line(LISTEN_RE, 10).group(2))
    return g


def reload(g, conf, docroot, **websocket) -> None:
    write_timers(conf, docroot, **websocket)
    mark = len(g.lines)
    g.proc.send_signal(signal.SIGHUP)
    g.wait_line("configuration reloaded", 5, start=mark)


def test_reload_turning_idle_timeout_off_keeps_the_loop_quiet(tmp_path, docroot, py_backend):
    """A silent connection admitted with idle_timeout_ms = 3000, then a reload to 0: the open
    connection keeps the timeouts it was admitted with (closed 1001 at 3 s), connections after
    the reload get the new ones (no idle timeout), and the gateway sleeps meanwhile: CPU time
    over 5 s stays under 0.2 s."""
    b = py_backend("py")
    conf = tmp_path / "wsgate.conf"
    write_timers(conf, docroot, idle_timeout_ms=3000, ping_interval_ms=0)
    g = start_from_file(conf)
    try:
        old = RawWS.connect(g.port, "/py")
        t0 = time.monotonic()
        old_port = old.sock.getsockname()[1]
        b.accept()
        got = []
        watcher = threading.Thread(
            target=lambda: got.append((old.recv_frame(timeout=10), time.monotonic())), daemon=True
        )
        watcher.start()
        reload(g, conf, docroot, idle_timeout_ms=0, ping_interval_ms=0)
        new = RawWS.connect(g.port, "/py")
        new_backend = b.accept()
        cpu0 = cpu_seconds(g.pid)
        time.sleep(5)
        used = cpu_seconds(g.pid) - cpu0
        print(f"CPU: {used:.2f}s")
        assert used < 0.2, f"the gateway used {used:.2f}s of CPU in 5 s with two idle connections"
        watcher.join(5)
        (close, when), = got
        assert close is not None and close.close_code == 1001, close
        assert 2.9 <= when - t0 <= 3.6, when - t0  # its admitted 3 s, not the reload's 0
        old.send_frame(OP_CLOSE, close.payload[:2])
        old.close()
        g.wait_line(rf"peer=127\.0\.0\.1:{old_port} close /py idle timeout \(1001\)", 5)
        # The connection admitted after the reload has no idle timeout: still relaying.
        new.send_frame(OP_TEXT, b"still here")
        assert recv_exact(new_backend, 10) == b"still here"
        new.close()
    finally:
        g.stop()
        print(g.log_text())


def test_pings_due_while_closing_keep_the_loop_quiet(tmp_path, docroot, py_backend):
    """A ping that falls due after the connection left `Open` (here: the backend ended, the
    client does not answer the close frame for the close timeout) is not sent, and its timer
    must not wake the loop again and again: CPU time over the 4 s wait stays under 0.2 s."""
    b = py_backend("py")
    conf = tmp_path / "wsgate.conf"
    write_timers(conf, docroot, ping_interval_ms=500, pong_timeout_ms=10000, idle_timeout_ms=0)
    g = start_from_file(conf)
    try:
        c = RawWS.connect(g.port, "/py")
        b.accept().close()
        f = c.recv_frame(timeout=5)
        assert f is not None and f.close_code == 1000, f
        # Not answered: the gateway waits the close timeout (5 s), pings falling due meanwhile.
        cpu0 = cpu_seconds(g.pid)
        time.sleep(4)
        used = cpu_seconds(g.pid) - cpu0
        print(f"CPU: {used:.2f}s")
        assert used < 0.2, f"the gateway used {used:.2f}s of CPU in 4 s while closing"
        assert c.recv_frame(timeout=3) is None  # no ping after the close frame: EOF
        c.close()
    finally:
        g.stop()
        print(g.log_text())


def test_reload_turning_pings_off_keeps_the_loop_quiet(tmp_path, docroot, py_backend):
    """ping_interval_ms 1000 then a reload to 0: the open connection keeps being pinged at the
    interval it was admitted with (and answers), a connection after the reload is never
    pinged, and the loop stays quiet (under 0.2 s of CPU over the 4 s)."""
    b = py_backend("py")
    conf = tmp_path / "wsgate.conf"
    write_timers(conf, docroot, ping_interval_ms=1000, pong_timeout_ms=2000, idle_timeout_ms=0)
    g = start_from_file(conf)
    try:
        old = RawWS.connect(g.port, "/py")
        b.accept()
        reload(g, conf, docroot, ping_interval_ms=0, idle_timeout_ms=0)
        new = RawWS.connect(g.port, "/py")
        b.accept()
        cpu0 = cpu_seconds(g.pid)
        end = time.monotonic() + 4
        pings = 0
        while (left := end - time.monotonic()) > 0:
            try:
                f = old.recv_frame(timeout=left)
            except TimeoutError:
                break
            assert f is not None and f.opcode == OP_PING, f
            old.send_frame(OP_PONG, f.payload)
            pings += 1
        used = cpu_seconds(g.pid) - cpu0
        print(f"CPU: {used:.2f}s")
        assert used < 0.2, f"the gateway used {used:.2f}s of CPU in 4 s"
        assert pings >= 3, pings
        with pytest.raises(TimeoutError):
            new.recv_frame(timeout=0.5)  # nothing in 4.5 s: not pinged
        old.close()
        new.close()
    finally:
        g.stop()
        print(g.log_text())


def test_reload_of_the_data_type_leaves_open_connections_theirs(tmp_path, docroot, py_backend):
    """type = "text" then a reload to "binary": a seqpacket connection opened before keeps
    sending text, its empty messages (a zero-length packet) included; one opened after sends
    binary."""
    b = py_backend("sp", socket.SOCK_SEQPACKET)
    conf = tmp_path / "wsgate.conf"
    write_timers(conf, docroot, type='"text"')
    g = start_from_file(conf)
    try:
        old = RawWS.connect(g.port, "/sp")
        old_backend = b.accept()
        reload(g, conf, docroot, type='"binary"')
        new = RawWS.connect(g.port, "/sp")
        new_backend = b.accept()
        for s in (old_backend, new_backend):
            s.send(b"a")
            s.send(b"")
        assert old.recv_message() == (OP_TEXT, b"a")
        assert old.recv_message() == (OP_TEXT, b"")
        assert new.recv_message() == (OP_BINARY, b"a")
        assert new.recv_message() == (OP_BINARY, b"")
        old.close()
        new.close()
    finally:
        g.stop()
        print(g.log_text())


# ---- reloaded compression ----------------------------------------------------------------

REFUSED = "SIGHUP: new configuration refused, the old one stays: "


def write_compression(path, docroot, top: str = "", compression: str | None = None) -> None:
    """A one-server file: `top` at the top level, `compression = <compression>;` in its
    websocket section; /nope is denied, so that a refused reload shows in a 403."""
    ws = f" compression = {compression};" if compression else ""
    path.write_text(
        f'user = "";\n{top}\n'
        f'servers = ({{ addr = "127.0.0.1"; port = 0;'
        f' websocket = {{ docroot = "{docroot}"; deny = "nope";{ws} }}; }});\n'
    )


def deflate_answer(port: int, path: str) -> str | None:
    """The extension the gateway accepts from a permessage-deflate offer (without its
    parameters), or None."""
    status, headers, _ = raw_handshake(
        port, path, {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    )
    assert status == 101, status
    answer = headers.get("sec-websocket-extensions")
    return answer.split(";")[0] if answer is not None else None


def sighup(g, pattern: str) -> str:
    """Sends SIGHUP; the first log line after it matching `pattern`."""
    mark = len(g.lines)
    g.proc.send_signal(signal.SIGHUP)
    return g.wait_line(pattern, 5, start=mark).string


def test_reload_keeps_the_compression_contexts_made_at_start(tmp_path, docroot, echo_backend, ws):
    """The contexts are made at start for one window, level and memory: a reload that changes
    one of them is refused whole (the log names the setting, the new deny list does not
    apply); one that moves compression between endpoints is applied, and the endpoint it moved
    to relays compressed messages."""
    echo_backend("stream", "echo")
    echo_backend("stream", "nope")
    echo_backend("stream", "other")
    conf = tmp_path / "wsgate.conf"
    write_compression(conf, docroot, compression='{ echo = "permessage-deflate"; }')
    g = start_from_file(conf)
    try:
        assert deflate_answer(g.port, "/echo") == "permessage-deflate"
        assert deflate_answer(g.port, "/other") is None

        # A new level, compression on /other, and /nope allowed: all refused together.
        conf.write_text(conf.read_text().replace('deny = "nope";', "")
                        .replace("echo =", "other =").replace("\n\n", "\ncompression_level = 1;\n"))
        assert "compression_level = 1;" in conf.read_text() and "other =" in conf.read_text()
        line = sighup(g, "SIGHUP: new configuration refused")
        assert line.endswith(
            REFUSED + "compression_level is 6 since start; restart wsgate to change it"), line
        assert deflate_answer(g.port, "/echo") == "permessage-deflate"
        assert deflate_answer(g.port, "/other") is None
        assert raw_handshake(g.port, "/nope")[0] == 403
        for top, key, was in [("compression_window = 10;", "compression_window", 15),
                              ('compression_memory = "4M";', "compression_memory", 2 << 20)]:
            write_compression(conf, docroot, top, '{ echo = "permessage-deflate"; }')
            line = sighup(g, "SIGHUP: new configuration refused")
            assert line.endswith(
                f"{REFUSED}{key} is {was} since start; restart wsgate to change it"), line

        # Within the contexts, compression moves: /other now, /echo no more.
        write_compression(conf, docroot, compression='{ other = "permessage-deflate"; }')
        sighup(g, "SIGHUP: configuration reloaded")
        assert deflate_answer(g.port, "/echo") is None
        assert deflate_answer(g.port, "/other") == "permessage-deflate"
        c = ws(f"ws://127.0.0.1:{g.port}/other", compression="deflate")
        assert c.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate;")
        text = "compressible " * 500
        c.send(text)
        assert c.recv(timeout=5) == text
        c.close()
        # Compressed both ways: far fewer bytes than the text on the wire.
        m = g.wait_line(r"close /other client closed \(1000\); client in (\d+) out (\d+) bytes", 5)
        assert int(m.group(1)) < len(text) // 4 and int(m.group(2)) < len(text) // 4, m.string
    finally:
        g.stop()
        print(g.log_text())


def test_reload_cannot_turn_compression_on_without_contexts(tmp_path, docroot, echo_backend):
    """Started with compression off everywhere, the gateway holds no contexts: a reload that
    turns it on is refused (the log says a restart is needed) and nothing else of it applies."""
    echo_backend("stream", "echo")
    echo_backend("stream", "nope")
    conf = tmp_path / "wsgate.conf"
    write_compression(conf, docroot)
    g = start_from_file(conf)
    try:
        assert "compression:" not in g.log_text()  # no contexts made
        conf.write_text(conf.read_text().replace('deny = "nope";',
                                                 'compression = "permessage-deflate";'))
        line = sighup(g, "SIGHUP: new configuration refused")
        assert line.endswith(
            REFUSED + f"127.0.0.1:{g.port}: compression: no site offered it at start, so there "
            "are no compression contexts; restart wsgate to turn it on"), line
        assert deflate_answer(g.port, "/echo") is None
        assert raw_handshake(g.port, "/nope")[0] == 403
        # "none" asks for nothing the gateway lacks.
        conf.write_text(conf.read_text().replace('"permessage-deflate"', '"none"'))
        sighup(g, "SIGHUP: configuration reloaded")
        assert raw_handshake(g.port, "/nope")[0] == 101
    finally:
        g.stop()
        print(g.log_text())
