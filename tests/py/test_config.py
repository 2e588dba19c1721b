"""wsgate -f: a ouistiti-style configuration with two servers (one on ::1), routing,
allow/deny/denylast, --check, SIGHUP reload and SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import pytest
from harness import Child, echo_bin, gateway_bin, raw_handshake
from websockets.exceptions import ConnectionClosed, InvalidStatus


def free_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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
