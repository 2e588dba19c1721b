"""Exec links: a program per connection (websocketd's model), against real programs: `cat`,
shell scripts reading the CGI variables, a program that ignores SIGTERM, one that is killed,
the process limits, stderr into the log, and what is left of the gateway after a thousand
programs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import LISTEN_RE, Child, RawWS, fd_count, rss_kb, build_request, gateway_bin, open_socket, read_response_head, ws_connect


def script(dir: Path, name: str, body: str) -> Path:
    p = dir / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of every process whose parent is `pid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        rest = stat.rsplit(") ", 1)[1].split()
        if int(rest[1]) == pid:
            out.append((int(d), rest[0]))
    return out


def wait_for(cond, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_cat_echoes_text_and_binary(gateway):
    g = gateway(link=["cat=exec:/bin/cat"])
    ws = ws_connect(g.url("/cat"))
    ws.send("hello, cat")
    assert ws.recv(timeout=5) == "hello, cat"
    big = "x" * 100_000
    ws.send(big)
    got = ""
    while len(got) < len(big):
        got += ws.recv(timeout=5)
    assert got == big
    ws.close()
    g.wait_line(r"conn=\S+ pid=(\d+) started /bin/cat")
    # Its input ended at the close; SIGTERM may come first.
    g.wait_line(r"pid=\d+ program ended: (exit status 0|killed by SIGTERM)")
    wait_for(lambda: not children_of(g.pid), "cat to be reaped")


def test_a_shell_script_gets_the_cgi_variables_and_nothing_of_the_gateway(gateway, sandbox):
    prog = script(
        sandbox,
        "cgi.sh",
        'for v in REMOTE_ADDR REMOTE_PORT SERVER_NAME SERVER_PORT REQUEST_URI QUERY_STRING '
        'SCRIPT_NAME PATH_INFO HTTPS HTTP_X_ROUTER HTTP_HOST GATEWAY_INTERFACE; do\n'
        '  eval "echo $v=\\$$v"\n'
        "done\n"
        'echo "PWD=$(pwd)"\n'
        # The environment as given (the shell adds PWD; its default PATH is not exported).
        'echo "NAMES=$(env | sed -n "s/=.*//p" | sort | tr "\\n" " ")"\n',
    )
    os.environ["WSGATE_SECRET"] = "do-not-leak"
    try:
        g = gateway(link=[f"cgi=exec:{prog}"])
    finally:
        del os.environ["WSGATE_SECRET"]
    ws = RawWS.connect(
        g.port, "/cgi/room/7?user=ann&x=1", headers={"X-Router": "r1", "Origin": None}
    )
    s = ws.sock
    text = b""
    while b"NAMES=" not in text:
        msg = ws.recv_message(timeout=5)
        assert msg is not None, text
        text += msg[1]
    got = dict(line.split("=", 1) for line in text.decode().splitlines())
    local_port = s.getsockname()[1]
    assert got["REMOTE_ADDR"] == "127.0.0.1"
    assert got["REMOTE_PORT"] == str(local_port)
    assert got["SERVER_NAME"] == "127.0.0.1"
    assert got["SERVER_PORT"] == str(g.port)
    assert got["REQUEST_URI"] == "/cgi/room/7?user=ann&x=1"
    assert got["QUERY_STRING"] == "user=ann&x=1"
    assert got["SCRIPT_NAME"] == "/cgi"
    assert got["PATH_INFO"] == "/room/7"
    assert got["HTTPS"] == "off"
    assert got["HTTP_X_ROUTER"] == "r1"
    assert got["HTTP_HOST"] == f"127.0.0.1:{g.port}"
    assert got["GATEWAY_INTERFACE"] == "CGI/1.1"
    # The program's own directory, whatever the gateway's is.
    assert got["PWD"] == str(sandbox)
    # Nothing of the gateway's environment (its PATH, a secret): the CGI set only.
    assert "do-not-leak" not in text.decode()
    names = set(got["NAMES"].split())
    cgi = {"GATEWAY_INTERFACE", "SERVER_SOFTWARE", "SERVER_PROTOCOL", "REQUEST_METHOD", "REMOTE_ADDR",
           "REMOTE_HOST", "REMOTE_PORT", "SERVER_NAME", "SERVER_PORT", "REQUEST_URI", "QUERY_STRING",
           "SCRIPT_NAME", "PATH_INFO", "HTTPS"}
    assert cgi <= names, cgi - names
    assert {n for n in names - cgi if not n.startswith("HTTP_")} == {"PWD"}, names
    ws.close()


def test_the_path_never_chooses_the_program(gateway, sandbox):
    """What follows the origin is the program's PATH_INFO, never a program or an argument."""
    prog = script(sandbox, "argv.sh", 'echo "ARGS=$#:$*"\necho "PI=$PATH_INFO"\n')
    g = gateway(link=[f"run=exec:{prog} fixed"])
    ws = ws_connect(g.url("/run/bin/sh/-c/id"))
    out = ""
    while "PI=" not in out:
        out += ws.recv(timeout=5)
    assert "ARGS=1:fixed" in out
    assert "PI=/bin/sh/-c/id" in out
    ws.close()


def test_seqpacket_mode_keeps_each_message_whole(gateway):
    g = gateway(link=["cat=exec:/bin/cat"], m="cat=seqpacket")
    ws = ws_connect(g.url("/cat"))
    for m in ["one", "two, longer", "3" * 5000]:
        ws.send(m)
    assert [ws.recv(timeout=5) for _ in range(3)] == ["one", "two, longer", "3" * 5000]
    ws.close()


def test_a_program_that_ignores_sigterm_is_killed_after_the_grace_period(gateway, sandbox):
    prog = script(sandbox, "stubborn.sh", "trap '' TERM\necho ready $$\nwhile :; do sleep 0.1; done\n")
    g = gateway(link=[f"s=exec:{prog}"], close_timeout="1s")
    ws = ws_connect(g.url("/s"))
    pid = int(ws.recv(timeout=5).split()[1])
    assert (pid, "S") in children_of(g.pid) or any(p == pid for p, _ in children_of(g.pid))
    closed = time.monotonic()
    ws.close()
    g.wait_line(rf"pid={pid} program ended: killed by SIGKILL", timeout=10)
    took = time.monotonic() - closed
    assert 0.8 < took < 5, took
    # Its sleep went with it (the whole process group), and nothing is left unreaped.
    wait_for(lambda: not children_of(g.pid), "the group to be gone and reaped")


def test_a_program_that_honours_sigterm_ends_at_close_without_waiting(gateway, sandbox):
    prog = script(sandbox, "polite.sh", "echo ready\nwhile :; do sleep 0.1; done\n")
    g = gateway(link=[f"p=exec:{prog}"], close_timeout="5s")
    ws = ws_connect(g.url("/p"))
    assert ws.recv(timeout=5).startswith("ready")
    closed = time.monotonic()
    ws.close()
    g.wait_line(r"program ended: killed by SIGTERM", timeout=10)
    assert time.monotonic() - closed < 3
    wait_for(lambda: not children_of(g.pid), "reaped")


def test_a_killed_program_closes_its_client_and_bystanders_go_on(gateway, sandbox):
    prog = script(sandbox, "victim.sh", "echo pid $$\nexec cat\n")
    g = gateway(link=[f"v=exec:{prog}", "cat=exec:/bin/cat"])
    bystander = ws_connect(g.url("/cat"))
    bystander.send("before")
    assert bystander.recv(timeout=5) == "before"
    victim = RawWS.connect(g.port, "/v")
    kind, data = victim.recv_message(timeout=5)
    pid = int(data.split()[1])
    os.kill(pid, signal.SIGKILL)
    frame, _ = victim.wait_close()
    assert frame is not None and frame.close_code in (1000, 1011)
    victim.close()
    g.wait_line(rf"pid={pid} program ended: killed by SIGKILL")
    g.wait_line(r"close /v backend closed")
    bystander.send("after")
    assert bystander.recv(timeout=5) == "after"
    bystander.close()
    wait_for(lambda: not children_of(g.pid), "reaped")


def test_the_process_limits_answer_503(gateway, tmp_path, docroot, sandbox):
    prog = script(sandbox, "hold.sh", "echo up\nexec cat\n")
    g = gateway(link=[f"a=exec:{prog}", f"b=exec:{prog}"], exec_limit=2)
    held = [ws_connect(g.url(p)) for p in ("/a", "/b")]
    for ws in held:
        assert ws.recv(timeout=5) == "up\n"
    s = open_socket(g.port)
    s.sendall(build_request(g.port, "/a"))
    assert read_response_head(s).status == 503
    s.close()
    g.wait_line(r"close /a refused 503: process limit reached")
    held[0].close()
    wait_for(lambda: len(children_of(g.pid)) == 1, "one program to end")
    again = ws_connect(g.url("/a"))
    assert again.recv(timeout=5) == "up\n"
    again.close()
    held[1].close()

    # A link's own limit, from the config file.
    conf = tmp_path / "limit.conf"
    conf.write_text(
        f"""exec_limit = 8;
servers = ({{
    port = 0; addr = "127.0.0.1";
    websocket = {{
        docroot = "{docroot}";
        links = ( {{ origin = "one"; type = "exec"; destination = "{prog}"; limit = 1; }},
                  {{ origin = "two"; type = "exec"; destination = "{prog}"; }} );
    }};
}});
"""
    )
    f = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    try:
        port = int(f.wait_line(LISTEN_RE, 10).group(2))
        first = ws_connect(f"ws://127.0.0.1:{port}/one")
        assert first.recv(timeout=5) == "up\n"
        s = open_socket(port)
        s.sendall(build_request(port, "/one"))
        assert read_response_head(s).status == 503
        s.close()
        other = ws_connect(f"ws://127.0.0.1:{port}/two")
        assert other.recv(timeout=5) == "up\n"
        first.close()
        other.close()
    finally:
        f.stop()


def test_stderr_goes_to_the_log_rate_limited(gateway, sandbox):
    prog = script(
        sandbox,
        "noisy.sh",
        'echo "first complaint" >&2\n'
        "i=0; while [ $i -lt 500 ]; do echo \"line $i\" >&2; i=$((i+1)); done\n"
        "echo done\nexec cat\n",
    )
    g = gateway(link=[f"n=exec:{prog}"])
    ws = ws_connect(g.url("/n"))
    assert ws.recv(timeout=10) == "done\n"
    g.wait_line(r"conn=\S+ pid=\d+ stderr: first complaint")
    ws.close()
    m = g.wait_line(r"pid=\d+ stderr: (\d+) line\(s\) not logged")
    logged = [l for l in g.lines if re.search(r"stderr: line \d+$", l)]
    # The burst, and what the budget earned while the script ran; the rest counted.
    assert 10 <= len(logged) <= 60, len(logged)
    assert len(logged) + 1 + int(m.group(1)) == 501


def test_a_relay_through_a_framed_program(gateway, sandbox):
    """Framed mode: the program speaks the record protocol on stdin/stdout (the kit's echo)."""
    from harness import echo_bin

    g = gateway(link=[f"echo=exec:{echo_bin()} --stdio -m framed"], m="echo=framed")
    ws = ws_connect(g.url("/echo"))
    ws.send("text message")
    assert ws.recv(timeout=5) == "text message"
    ws.send(b"\x00\x01binary")
    assert ws.recv(timeout=5) == b"\x00\x01binary"
    ws.close()


def test_a_thousand_programs_in_sequence_and_64_at_once_leave_nothing_behind(gateway):
    g = gateway(link=["cat=exec:/bin/cat"], exec_limit=64, c=80)
    # Warm up to the peak the test reaches: the first connections allocate what the loop
    # keeps, and the first time 64 are open at once their connection slots are made (a slot is
    # written when first needed, then kept) and their buffers touched.
    for _ in range(20):
        ws = ws_connect(g.url("/cat"))
        ws.send("w")
        assert ws.recv(timeout=5) == "w"
        ws.close()
    warm = [ws_connect(g.url("/cat")) for _ in range(64)]
    for ws in warm:
        ws.send("w")
    for ws in warm:
        assert ws.recv(timeout=10) == "w"
        ws.close()
    wait_for(lambda: not children_of(g.pid), "warm-up programs reaped", timeout=20)
    fds, rss = fd_count(g.pid), rss_kb(g.pid)
    for i in range(1000):
        ws = ws_connect(g.url("/cat"))
        ws.send(str(i))
        assert ws.recv(timeout=5) == str(i)
        ws.close()
    many = [ws_connect(g.url("/cat")) for _ in range(64)]
    for i, ws in enumerate(many):
        ws.send(f"m{i}")
    for i, ws in enumerate(many):
        assert ws.recv(timeout=10) == f"m{i}"
    assert len(children_of(g.pid)) == 64
    s = open_socket(g.port)
    s.sendall(build_request(g.port, "/cat"))
    assert read_response_head(s).status == 503
    s.close()
    for ws in many:
        ws.close()
    wait_for(lambda: not children_of(g.pid), "every program reaped", timeout=20)
    assert not [p for p, st in children_of(g.pid) if st == "Z"]
    wait_for(lambda: fd_count(g.pid) == fds, f"descriptors back to {fds}")
    grown = rss_kb(g.pid) - rss
    assert grown <= 64, f"RSS grew {grown} KiB"


@pytest.mark.parametrize(
    "link, message",
    [
        ('origin = "s"; type = "exec"; destination = "sh";', r":7:\d+: an exec link runs a program named by its absolute path"),
        ('origin = "s"; type = "exec"; destination = "/nonexistent/prog";', r":7:\d+: exec link program .*No such file"),
        ('origin = "s"; type = "exec"; destination = "/etc/passwd";', r":7:\d+: exec link program .*not an executable"),
        ('origin = "s"; type = "exec"; destination = "/bin/cat"; dir = "/nonexistent";', r":7:\d+: exec link dir"),
        ('origin = "s"; type = "exec"; destination = "/bin/cat"; limit = 0;', r":7:\d+: expected processes 1..=1024"),
        ('origin = "s"; type = "exec"; destination = "/bin/cat"; args = "-u";', r":7:\d+: expected an array of strings"),
        ('origin = "s"; type = "exec"; destination = "/bin/cat"; args = [ 1 ];', r":7:\d+: expected a string in \"args\""),
        ('origin = "s"; type = "tcp"; destination = "127.0.0.1"; port = 1; args = [ "-x" ];', r":7:\d+: \"args\" and \"dir\" are settings of an exec link"),
    ],
)
def test_an_exec_link_wsgate_cannot_run_is_a_config_error_at_its_line(tmp_path, docroot, link, message):
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
    assert re.search(message, r.stderr), r.stderr


def test_exec_links_from_a_config_file_render_and_run(tmp_path, docroot, sandbox):
    prog = script(sandbox, "args.sh", 'for a in "$@"; do echo "[$a]"; done\necho "PWD=$(pwd)"\n')
    conf = tmp_path / "exec.conf"
    conf.write_text(
        f"""exec_limit = 4;
servers = ({{
    port = 0; addr = "127.0.0.1";
    websocket = {{
        docroot = "{docroot}";
        links = ( {{ origin = "args"; type = "exec"; destination = "{prog}";
                     args = [ "two words", "-x", "" ]; dir = "/tmp"; limit = 2; }} );
    }};
}});
"""
    )
    check = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    assert "exec_limit = 4;" in check.stdout
    assert f'type = "exec"; destination = "{prog}"; args = [ "two words", "-x", "" ]; dir = "/tmp"; limit = 2;' in check.stdout
    f = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    try:
        port = int(f.wait_line(LISTEN_RE, 10).group(2))
        ws = ws_connect(f"ws://127.0.0.1:{port}/args")
        out = ""
        while "PWD=" not in out:
            out += ws.recv(timeout=5)
        assert out == "[two words]\n[-x]\n[]\nPWD=/tmp\n"
        ws.close()
    finally:
        f.stop()


def test_an_exec_link_on_a_direct_site_is_refused(docroot):
    r = subprocess.run(
        [gateway_bin(), "-R", str(docroot), "-p", "0", "--direct", "--link", "x=exec:/bin/cat"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert r.returncode == 2
    assert "its exec target cannot take it" in r.stderr


def test_a_reload_cannot_change_the_process_limit(tmp_path, docroot):
    conf = tmp_path / "reload.conf"
    body = """exec_limit = {n};
servers = ({{ port = 0; addr = "127.0.0.1"; websocket = {{ docroot = "{d}";
    links = ( {{ origin = "cat"; type = "exec"; destination = "/bin/cat"; }} ); }}; }});
"""
    conf.write_text(body.format(n=2, d=docroot))
    f = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    try:
        port = int(f.wait_line(LISTEN_RE, 10).group(2))
        conf.write_text(body.format(n=3, d=docroot))
        f.proc.send_signal(signal.SIGHUP)
        f.wait_line(r"SIGHUP: new configuration refused, the old one stays: the exec process limit is 2")
        ws = ws_connect(f"ws://127.0.0.1:{port}/cat")
        ws.send("still")
        assert ws.recv(timeout=5) == "still"
        ws.close()
    finally:
        f.stop()


def test_a_shutdown_waits_for_programs_that_honour_sigterm(gateway, sandbox):
    prog = script(
        sandbox,
        "graceful.sh",
        "trap 'echo saving state >&2; exit 0' TERM\necho up\nwhile :; do sleep 0.1; done\n",
    )
    g = gateway(link=[f"g=exec:{prog}"], close_timeout="3s")
    ws = ws_connect(g.url("/g"))
    assert ws.recv(timeout=5) == "up\n"
    g.expected_exit = True
    g.proc.send_signal(signal.SIGTERM)
    # The client is closed with 1001; its program gets SIGTERM and is given the time to end.
    g.wait_line(r"stderr: saving state", timeout=10)
    g.wait_line(r"program ended: exit status 0", timeout=10)
    assert g.proc.wait(10) == 0
    assert not any("SIGKILL" in l for l in g.lines), g.log_text()
    ws.close()


def test_a_program_runs_as_the_services_user(gateway, sandbox):
    """The gateway drops privileges before it serves; its programs inherit that, nothing more."""
    import pwd

    assert os.geteuid() == 0, "this test needs root (the test suite runs as root)"
    nobody = pwd.getpwnam("nobody")
    os.chmod(sandbox, 0o755)
    os.chmod(sandbox / "www", 0o755)
    prog = script(sandbox, "who.sh", 'echo "$(id -u) $(id -g) $(id -G)"\n')
    g = gateway(link=[f"who=exec:{prog}"], u="nobody")
    ws = ws_connect(g.url("/who"))
    uid, gid, *groups = ws.recv(timeout=5).split()
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
    assert "0" not in groups
    ws.close()
