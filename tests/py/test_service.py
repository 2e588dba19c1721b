"""The router service: privilege drop, init.d scripts, the privileged parent, syslog, the log
file, the rate limit of connection lines, and the pid file. Real processes throughout; the
privilege tests need root (as the CI runs)."""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import functools

import pytest
from harness import Child, gateway_bin, raw_handshake, wait_until

def _require_root(f):
    """The suite runs as root (scripts/test.sh installs packages too): a privilege drop that
    cannot be checked fails instead of being skipped."""

    @functools.wraps(f)
    def wrapper(*a, **kw):
        assert os.geteuid() == 0, "this test needs root (the test suite runs as root)"
        return f(*a, **kw)

    return wrapper


needs_root = _require_root

NOBODY = pwd.getpwnam("nobody")


# ---- helpers ---------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, list[int]]:
    """Uid, Gid (real, effective, saved, fs) and Groups of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                out[key] = [int(v) for v in value.split()]
    return out


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def world_readable(sandbox: Path) -> None:
    """The sandbox is 0700 (mkdtemp); an unprivileged gateway reloading or a backend started
    as nobody must get through it."""
    os.chmod(sandbox, 0o755)
    os.chmod(sandbox / "www", 0o755)


def write_config(path: Path, docroot: Path, **top) -> Path:
    """An ouistiti config with one server on 127.0.0.1, any port; `top` adds top-level keys
    (pid_file -> pid-file; strings quoted, booleans as true/false)."""
    lines = []
    for key, value in top.items():
        key = key.replace("_", "-") if key in ("pid_file", "log_file") else key
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()};")
        else:
            lines.append(f'{key} = "{value}";')
    lines.append(
        f'servers = ({{ addr = "127.0.0.1"; port = 0; websocket = {{ docroot = "{docroot}"; }}; }});'
    )
    path.write_text("\n".join(lines) + "\n")
    return path


def echo_roundtrip(ws, g, text: str = "through the gateway") -> None:
    c = ws(g.url("/echo"))
    c.send(text)
    assert c.recv(timeout=5) == text
    c.close()


def init_script(path: Path, name: str, record: Path, body_start: str = "", body_stop: str = "") -> None:
    path.write_text(
        "#!/bin/sh\n"
        f'echo "$1 {name} $(id -u)" >> {record}\n'
        'case "$1" in\n'
        f"start)\n{body_start}\n  ;;\n"
        f"stop)\n{body_stop}\n  ;;\n"
        "esac\n"
    )
    path.chmod(0o755)


def echo_scripts(sandbox: Path, docroot: Path, record: Path, echo_user: str | None = "nobody") -> Path:
    """init.d with S10echo (starts/stops a websocket_echo) and S20mark (only records), plus a
    file that is not executable and a hidden one, neither of which may run."""
    from harness import echo_bin

    d = sandbox / "init.d"
    d.mkdir()
    u = f"-u {echo_user}" if echo_user else ""
    init_script(
        d / "S10echo",
        "S10echo",
        record,
        body_start=(
            f"  {echo_bin()} -R {docroot} -n echo {u} >/dev/null 2>&1 &\n"
            f"  echo $! > {sandbox}/echo.pid\n"
            "  i=0\n"
            f"  while [ ! -S {docroot}/echo ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i+1)); done\n"
            "  echo 'S10echo: echo backend started'"
        ),
        body_stop=f"  kill \"$(cat {sandbox}/echo.pid)\"\n  echo 'S10echo: echo backend stopped'",
    )
    init_script(d / "S20mark", "S20mark", record)
    (d / "README").write_text("not a script\n")
    init_script(d / ".hidden", ".hidden", record)
    return d


def records(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


# ---- (a) privilege drop ------------------------------------------------------------------------


@needs_root
@pytest.mark.parametrize("how", ["config", "cli"])
def test_user_drops_every_id_and_still_relays(sandbox, docroot, echo_backend, gateway, ws, how):
    world_readable(sandbox)
    echo_backend(extra=["-u", "nobody"])
    pid_file = sandbox / "wsgate.pid"
    if how == "config":
        conf = write_config(sandbox / "w.conf", docroot, user="nobody", pid_file=str(pid_file))
        g = gateway(f=conf)
    else:
        g = gateway(u="nobody", pid_file=pid_file)
    # Announced once everything is ready, so the drop already happened.
    assert any(re.search(r"running as nobody \(uid 65534", line) for line in g.lines), g.lines
    # No init_d: no privileged parent, the gateway itself runs the loop.
    assert children(g.pid) == []
    ids = proc_status(g.pid)
    assert ids["Uid"] == [NOBODY.pw_uid] * 4, ids
    assert ids["Gid"] == [NOBODY.pw_gid] * 4, ids
    assert 0 not in ids["Groups"], ids
    assert pid_file.read_text() == f"{g.pid}\n"
    echo_roundtrip(ws, g)
    g.expected_exit = True
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(10) == 0
    # nobody may not unlink in root's 0755 directory: the file is emptied instead.
    assert not pid_file.exists() or pid_file.read_text() == ""


@needs_root
def test_unknown_user_exits_1_before_listening(sandbox, docroot):
    conf = write_config(sandbox / "w.conf", docroot, user="no-such-user-wsgate")
    p = subprocess.run([gateway_bin(), "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1, p.stderr
    assert "unknown user" in p.stderr
    assert "listening on" not in p.stderr


@needs_root
def test_failed_drop_exits_1_rather_than_serve(sandbox, docroot):
    """Started as nobody and asked to become root: the drop fails, wsgate exits 1."""
    world_readable(sandbox)

    def as_nobody():
        os.setgroups([])
        os.setgid(NOBODY.pw_gid)
        os.setuid(NOBODY.pw_uid)

    p = subprocess.run(
        [gateway_bin(), "-a", "127.0.0.1", "-p", "0", "-R", str(docroot), "-u", "root"],
        capture_output=True, text=True, timeout=10, preexec_fn=as_nobody, cwd="/",
    )
    assert p.returncode == 1, p.stderr
    assert "exiting rather than serving as root" in p.stderr, p.stderr
    assert "running as" not in p.stderr
    assert "listening on" not in p.stderr


# ---- (b) init.d --------------------------------------------------------------------------------


@needs_root
def test_init_d_with_user_privileged_parent(sandbox, docroot, gateway, ws):
    world_readable(sandbox)
    record = sandbox / "record"
    init_d = echo_scripts(sandbox, docroot, record)
    pid_file = sandbox / "wsgate.pid"
    conf = write_config(sandbox / "w.conf", docroot, user="nobody", init_d=str(init_d),
                        pid_file=str(pid_file))
    g = gateway(f=conf)
    # Both start scripts ran, in name order, as root, before the listener was bound.
    assert records(record) == ["start S10echo 0", "start S20mark 0"]
    assert g.log_text().index("S10echo: echo backend started") < g.log_text().index("listening on")
    echo_pid = int((sandbox / "echo.pid").read_text())
    assert not gone(echo_pid)

    # The parent stays root and only waits; the child runs the loop as nobody.
    kids = wait_until(lambda: children(g.pid))
    assert len(kids) == 1, kids
    child = kids[0]
    g.wait_line(rf"running as nobody .*pid {child}$")
    assert proc_status(g.pid)["Uid"] == [0, 0, 0, 0]
    ids = proc_status(child)
    assert ids["Uid"] == [NOBODY.pw_uid] * 4, ids
    assert ids["Gid"] == [NOBODY.pw_gid] * 4, ids
    assert 0 not in ids["Groups"], ids
    # The parent holds no listening socket.
    parent_fds = os.listdir(f"/proc/{g.pid}/fd")
    assert all("socket" not in os.readlink(f"/proc/{g.pid}/fd/{fd}") for fd in parent_fds
               if os.path.exists(f"/proc/{g.pid}/fd/{fd}")), parent_fds
    assert pid_file.read_text() == f"{g.pid}\n"

    echo_roundtrip(ws, g)

    g.expected_exit = True
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(15) == 0
    # Stop scripts: reverse order, as root, after the child is gone.
    assert records(record) == [
        "start S10echo 0", "start S20mark 0", "stop S20mark 0", "stop S10echo 0",
    ]
    assert wait_until(lambda: gone(echo_pid), timeout=5), f"echo {echo_pid} still runs"
    assert gone(child)
    assert not pid_file.exists()
    g.wait_line(r"S10echo: echo backend stopped")
    g.wait_line(rf"pid {child} exited with status 0")


def test_init_d_without_user_no_fork(sandbox, docroot, gateway, ws):
    record = sandbox / "record"
    init_d = echo_scripts(sandbox, docroot, record, echo_user=None)
    g = gateway(init_d=init_d)
    assert records(record) == [f"start S10echo {os.geteuid()}", f"start S20mark {os.geteuid()}"]
    assert children(g.pid) == []
    echo_roundtrip(ws, g)
    echo_pid = int((sandbox / "echo.pid").read_text())
    g.expected_exit = True
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(15) == 0
    assert [r.split()[0:2] for r in records(record)][2:] == [["stop", "S20mark"], ["stop", "S10echo"]]
    assert wait_until(lambda: gone(echo_pid), timeout=5)


def test_failing_start_script_is_a_warning_not_a_stop(sandbox, docroot, echo_backend, gateway, ws):
    record = sandbox / "record"
    script = sandbox / "bad-script"
    init_script(script, "bad", record, body_start="  echo 'bad: cannot start' >&2; exit 3",
                body_stop="  exit 0")
    echo_backend()
    g = gateway(init_d=script)
    g.wait_line(r"init_d: \S+bad-script start: failed, exit status: 3")
    assert "bad: cannot start" in g.lines
    echo_roundtrip(ws, g)
    g.expected_exit = True
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(15) == 0
    assert [r.split()[0] for r in records(record)] == ["start", "stop"]


def test_bind_failure_still_runs_stop_scripts(sandbox, docroot):
    record = sandbox / "record"
    script = sandbox / "s"
    init_script(script, "s", record)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        p = subprocess.run(
            [gateway_bin(), "-a", "127.0.0.1", "-p", str(busy.getsockname()[1]), "-R", str(docroot),
             "--init-d", str(script)],
            capture_output=True, text=True, timeout=10,
        )
    finally:
        busy.close()
    assert p.returncode == 1, p.stderr
    assert [r.split()[0] for r in records(record)] == ["start", "stop"]


# ---- (c) syslog --------------------------------------------------------------------------------


class SyslogSink:
    """A syslogd stand-in: a UNIX datagram socket read by a thread (the kernel queues only a
    few datagrams, 10 by default, and the gateway never waits for a full socket)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.got: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True, name="syslogd")
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                self.got.append(self.sock.recv(4096))
            except (socket.timeout, TimeoutError):
                pass
            except OSError:
                return

    def wait(self, pattern: bytes, timeout: float = 5.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for d in list(self.got):
                m = rx.search(d)
                if m:
                    return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"no datagram matching {pattern!r}; got {self.got!r}")
            time.sleep(0.02)

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def test_syslog_datagrams(sandbox, echo_backend, gateway, ws, monkeypatch):
    sink = SyslogSink(sandbox / "log")
    monkeypatch.setenv("WSGATE_SYSLOG_SOCKET", str(sink.path))
    try:
        echo_backend()
        g = gateway(syslog=True)
        c = ws(g.url("/echo"))
        c.send("hello")
        assert c.recv(timeout=5) == "hello"
        c.close()
        assert raw_handshake(g.port, "/nope")[0] == 404
        assert raw_handshake(g.port, "/echo", headers={"Origin": "http://evil.example"})[0] == 403

        pid = rb"wsgate\[" + str(g.pid).encode() + rb"\]: "
        opened = sink.wait(rb"^<30>" + pid + rb"conn=(\S+) peer=\S+ open /echo mode=stream$")
        conn = re.escape(opened.group(1))
        sink.wait(rb"^<30>" + pid + rb"conn=" + conn + rb" peer=\S+ close /echo client closed \(1000\)")
        sink.wait(rb"^<30>" + pid + rb"conn=\S+ peer=\S+ close /nope refused 404")
        sink.wait(rb"^<28>" + pid + rb"conn=\S+ peer=\S+ Origin \"http://evil.example\" refused")
        assert all(not d.endswith(b"\n") and len(d) <= 1024 for d in sink.got)
        # Connection lines went to syslog only; stderr has the banner.
        assert not any("conn=" in line for line in g.lines), g.lines
        assert any("listening on" in line for line in g.lines)
    finally:
        sink.close()


def test_syslog_socket_missing_falls_back_to_stderr(sandbox, echo_backend, gateway, ws, monkeypatch):
    monkeypatch.setenv("WSGATE_SYSLOG_SOCKET", str(sandbox / "no-syslogd"))
    echo_backend()
    g = gateway(syslog=True)
    assert len([line for line in g.lines if "warning: syslog socket" in line]) == 1, g.lines
    c = ws(g.url("/echo"))
    c.close()
    g.wait_line(r"wsgate: conn=\S+ peer=\S+ open /echo")


# ---- (d) rate limit ----------------------------------------------------------------------------


def test_refusal_flood_is_rate_limited(gateway):
    g = gateway()
    start = len(g.lines)
    t0 = time.monotonic()
    for _ in range(500):
        assert raw_handshake(g.port, "/nope")[0] == 404
    elapsed = time.monotonic() - t0
    time.sleep(1.2)
    # Logging resumes: the next line is preceded by the count of what was left out.
    assert raw_handshake(g.port, "/last-one")[0] == 404
    g.wait_line(r"close /last-one refused 404", start=start)
    lines = g.lines[start:]
    refused = [line for line in lines if re.search(r"close /nope refused 404", line)]
    suppressed = [re.search(r"(\d+) log lines suppressed", line) for line in lines]
    suppressed = [int(m.group(1)) for m in suppressed if m]
    # Burst of 50, then 20 per second; one "suppressed" line per second at most.
    assert len(refused) <= 50 + 20 * (elapsed + 0.5), (len(refused), elapsed)
    if elapsed < 1.0:
        assert len(refused) <= 70, len(refused)
    assert 1 <= len(suppressed) <= elapsed + 2, (suppressed, elapsed)
    # Every refusal is either logged or counted.
    assert len(refused) + sum(suppressed) == 500, (len(refused), suppressed)
    assert lines.index(next(x for x in lines if "suppressed" in x)) < lines.index(
        next(x for x in lines if "/last-one" in x))


def test_log_rate_0_logs_every_refusal(sandbox, docroot, gateway):
    # syslog = true from the config file too, with a missing socket: the stderr fallback.
    conf = write_config(sandbox / "w.conf", docroot, syslog=True)
    os.environ["WSGATE_SYSLOG_SOCKET"] = str(sandbox / "none")
    try:
        g = gateway(f=conf, log_rate=0)
    finally:
        del os.environ["WSGATE_SYSLOG_SOCKET"]
    assert any("warning: syslog socket" in line for line in g.lines), g.lines
    for _ in range(120):
        assert raw_handshake(g.port, "/nope")[0] == 404
    assert wait_until(lambda: sum("close /nope refused 404" in x for x in g.lines) == 120)
    assert not any("suppressed" in line for line in g.lines)


# ---- (e) log file and pid file -----------------------------------------------------------------


def test_log_file(sandbox, echo_backend, gateway, ws):
    log = sandbox / "wsgate.log"
    log.write_text("earlier line\n")
    os.chmod(log, 0o600)
    new_log = sandbox / "new.log"
    script = sandbox / "hello"
    init_script(script, "hello", sandbox / "record", body_start="  echo 'hello from init_d'")
    echo_backend()
    g = gateway(L=log, init_d=script)
    c = ws(g.url("/echo"))
    c.close()
    assert raw_handshake(g.port, "/nope")[0] == 404
    assert wait_until(lambda: "close /nope refused 404" in log.read_text())
    text = log.read_text()
    assert text.startswith("earlier line\n")
    assert re.search(r"^wsgate: conn=\S+ peer=\S+ open /echo mode=stream$", text, re.M), text
    assert "hello from init_d\n" in text
    assert "wsgate: listening on 127.0.0.1:" in text
    # stderr keeps only what the operator must see at start-up.
    assert not any("conn=" in line for line in g.lines), g.lines

    g2 = gateway(L=new_log)
    assert stat.S_IMODE(os.stat(new_log).st_mode) == 0o640
    assert "listening on" in new_log.read_text()
    g2.expected_exit = True
    assert g2.stop() == 0


def test_unwritable_log_file_exits_1(sandbox, docroot):
    p = subprocess.run(
        [gateway_bin(), "-a", "127.0.0.1", "-p", "0", "-R", str(docroot), "-L", str(sandbox / "no/such/dir")],
        capture_output=True, text=True, timeout=10,
    )
    assert p.returncode == 1
    assert "log file" in p.stderr


def test_pid_file_written_and_removed(sandbox, gateway):
    pid_file = sandbox / "run.pid"
    g = gateway(pid_file=pid_file)
    assert pid_file.read_text() == f"{g.pid}\n"
    g.expected_exit = True
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(10) == 0
    assert not pid_file.exists()
