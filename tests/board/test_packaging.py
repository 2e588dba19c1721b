"""Packaging for the router images (board/): shellcheck of every shell script, the OpenWrt
init script's UCI-to-config mapping and procd calls (with stand-ins for uci and
/lib/functions.sh, tests/board/openwrt/), the OpenWrt rpcd plugin against a running gateway
and a real WebSocket client (with stand-ins for uci and jsonfilter), the Buildroot SysV script
starting, reloading and stopping the real gateway, and the systemd unit's commands.

The gateway is $WSGATE_BIN (default target/release/wsgate), the echo backend
$WSGATE_ECHO_BIN (default target/release/websocket_echo), as for tests/py, whose harness
starts them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests/py"))
import harness  # noqa: E402  (tests/py's: starts the gateway and the echo backend)

WSGATE = os.environ.get("WSGATE_BIN", str(ROOT / "target/release/wsgate"))
INIT = ROOT / "board/openwrt/files/wsgate.init"
UCI_DEFAULT = ROOT / "board/openwrt/files/wsgate.config"
RPCD = ROOT / "board/openwrt/files/wsgate.rpcd"
ACL = ROOT / "board/openwrt/files/wsgate.acl.json"
SYSV = ROOT / "board/buildroot/S50wsgate"


def shell_scripts() -> list[Path]:
    """Every committed file that is a shell script: *.sh, or a sh/bash/ash shebang."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    out = []
    for f in files:
        if not f:
            continue
        p = ROOT / f.decode()
        if p.is_symlink() or not p.is_file():
            continue
        head = p.open("rb").readline()
        if p.suffix == ".sh" or re.match(rb"#!\s*/(usr/)?bin/(env )?(ba|a|da)?sh\b", head):
            out.append(p)
    return out


def test_shellcheck_every_shell_script():
    scripts = shell_scripts()
    names = {str(p.relative_to(ROOT)) for p in scripts}
    # The packaging scripts must be among them (the shebang detection finds them).
    for must in ["board/openwrt/files/wsgate.init", "board/openwrt/files/wsgate.rpcd",
                 "board/buildroot/S50wsgate",
                 "scripts/cross.sh", "scripts/qemu-system-test.sh", "cross/bin/zigcc"]:
        assert must in names
    r = subprocess.run(["shellcheck", "-x", *map(str, scripts)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- What the packages build -------------------------------------------------------------


def cross_sh_array(name: str) -> list[str]:
    """A bash array assigned in scripts/cross.sh (`NAME=(...)`, possibly over several lines)."""
    text = (ROOT / "scripts/cross.sh").read_text()
    m = re.search(rf"^{name}=\((.*?)\)$", text, re.M | re.S)
    assert m, f"{name} not found in scripts/cross.sh"
    return shlex.split(m.group(1))


def test_packages_build_the_profile_within_the_size_budget():
    """board/sizes.md measures (and CI's size budget checks) `scripts/cross.sh build-small`:
    the OpenWrt and Buildroot packages must build that same profile with the same flags."""
    flags = cross_sh_array("SMALL_STD") + cross_sh_array("SMALL_EXTRA")
    assert "-Zpanic-immediate-abort" in flags and "-Zbuild-std=std,panic_abort" in flags
    openwrt = (ROOT / "board/openwrt/Makefile").read_text().replace("$(comma)", ",")
    buildroot = re.sub(r"-Z (\S)", r"-Z\1", (ROOT / "board/buildroot/wsgate.mk").read_text())
    for name, text in [("openwrt", openwrt), ("buildroot", buildroot)]:
        for f in flags:
            assert f in text, f"{name} does not pass {f}"
        assert "RUSTC_BOOTSTRAP=1" in text, name
    # What the budget measures is what they ship by default: without permessage-deflate,
    # unless the package option asks for it.
    assert cross_sh_array("SHIPPED_FEATURES") == ["--no-default-features"]
    assert "WSGATE_CARGO_ARGS+= $(if $(CONFIG_WSGATE_DEFLATE),,--no-default-features)" in openwrt
    assert "config WSGATE_DEFLATE" in openwrt and "PKG_CONFIG_DEPENDS:=CONFIG_WSGATE_DEFLATE" in openwrt
    assert re.search(r"ifeq \(\$\(BR2_PACKAGE_WSGATE_DEFLATE\),\)\nWSGATE_CARGO_PROFILE_OPTS \+= "
                     r"--no-default-features\nendif", buildroot)
    assert "config BR2_PACKAGE_WSGATE_DEFLATE" in (ROOT / "board/buildroot/Config.in").read_text()
    assert "CARGO_PKG_PROFILE:=$(if $(CONFIG_DEBUG),dev,release-small)" in openwrt
    assert "$(call Build/Compile/Cargo,,$(WSGATE_CARGO_ARGS))" in openwrt
    # The sample backend is a [[bin]] of the backend kit (backend/), another package: each
    # package builds and installs it too, with the same flags.
    assert "$(call Build/Compile/Cargo,backend,--bin websocket_echo $(WSGATE_CARGO_ARGS))" in openwrt
    assert 'name = "websocket_echo"' in (ROOT / "backend/Cargo.toml").read_text()
    kit_install = buildroot[buildroot.index("define WSGATE_INSTALL_KIT"):]
    kit_install = kit_install[:kit_install.index("endef")]
    assert "--path backend" in kit_install and "$(WSGATE_CARGO_INSTALL_OPTS)" in kit_install
    assert buildroot.index("+= WSGATE_INSTALL_KIT") < buildroot.index("+= WSGATE_REMOVE_ECHO")
    assert "--profile release-small" in buildroot
    assert "WSGATE_CARGO_INSTALL_OPTS = $(WSGATE_CARGO_PROFILE_OPTS)" in buildroot


# ---- OpenWrt: UCI -> /var/etc/wsgate.conf ------------------------------------------------

def run_init(tmp: Path, uci_text: str, script: str) -> subprocess.CompletedProcess:
    """Runs `script` in a sh that has loaded the stand-in functions.sh and the init script,
    with /etc/config/wsgate = uci_text, procd_* recording their calls in $tmp/procd."""
    (tmp / "config").mkdir(exist_ok=True)
    (tmp / "config/wsgate").write_text(uci_text)
    prelude = f"""
        . {HERE}/openwrt/lib/functions.sh
        procd_open_instance() {{ echo "open $*" >>"$T/procd"; }}
        procd_set_param() {{ echo "set $*" >>"$T/procd"; }}
        procd_append_param() {{ echo "append $*" >>"$T/procd"; }}
        procd_close_instance() {{ echo "close" >>"$T/procd"; }}
        . {INIT}
        PROG={WSGATE}
        ECHO_PROG=/usr/bin/websocket_echo
        CONF=$T/var/etc/wsgate.conf
    """
    env = dict(os.environ, T=str(tmp), UCI_CONFIG_DIR=str(tmp / "config"),
               PATH=f"{HERE}/openwrt/bin:{os.environ['PATH']}")
    return subprocess.run(["sh", "-ec", prelude + script], env=env, capture_output=True,
                          text=True, timeout=30)


def generate(tmp: Path, uci_text: str) -> str:
    r = run_init(tmp, uci_text, 'config_load wsgate; wsgate_generate "$T/wsgate.conf"')
    assert r.returncode == 0, r.stderr
    return (tmp / "wsgate.conf").read_text()


def check(tmp: Path, conf: str) -> str:
    """`wsgate --check -f`: the generated file must be valid; returns the effective config."""
    f = tmp / "check.conf"
    f.write_text(conf)
    r = subprocess.run([WSGATE, "--check", "-f", str(f)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\n--- generated:\n{conf}"
    assert "warning" not in r.stderr.lower(), r.stderr
    return r.stdout + r.stderr


def test_default_uci_config_maps_to_a_valid_gateway_config(tmp_path):
    conf = generate(tmp_path, UCI_DEFAULT.read_text())
    assert 'user = "nobody";' in conf
    assert "syslog = true;" in conf
    assert "port = 8080;" in conf
    assert "maxclients = 32;" in conf
    assert 'docroot = "/var/run/websocket";' in conf
    assert 'mode = "stream";' in conf
    assert 'modes = { echo = "framed"; };' in conf
    assert 'origin = "same";' in conf
    effective = check(tmp_path, conf)
    assert "8080" in effective and "framed" in effective


def test_every_uci_option_and_two_servers(tmp_path):
    uci = """
config wsgate 'global'
	option enabled '1'
	option user 'www-data'
	option syslog '0'
	option log_file '/tmp/wsgate "quoted".log'
	option exec_limit '5'

config server 'lan'
	option port '8081'
	option addr '127.0.0.1'
	option maxclients '7'
	option docroot '/run/ws lan'
	option mode 'lines'
	list modes 'echo=framed'
	list modes 'raw=stream'
	list link 'mqtt=tcp:127.0.0.1:1883'
	list link 'v6=tcp:[::1]:8883'
	list link 'dev/echo=unix:/run/echo dev.sock'
	list link 'console=tty:/dev/ttyS0:9600,7E1'
	list link 'usb=tty:/dev/ttyUSB0'
	list link 'up=exec:/bin/sh  -c echo*'
	list link 'pipe=fifo:/run/d.in:/run/d.out'
	option allow '^/echo,raw'
	option deny 'admin*'
	option denylast 'yes'
	option origin 'http://router.lan'
	option htdocs '/www/ws'
	option context '1'
	option ping_interval_ms '20000'
	option idle_timeout_ms '60000'
	option max_message '65536'
	option auth_db 'DIR/pass"wd'
	option auth_realm 'router'
	option auth_unprotect '^/public$'
	option auth_require 'root,admins'
	option auth_session_key 'DIR/session.key'
	option auth_session_path '/login'
	option auth_expire '600'
	list auth_rule '^/admin*=root'
	list auth_rule '^/status$,^/logs$=ops,root'

config server
	option port '8082'
	option addr '::1'
"""
    # --check reads the user database and the session key as the start would.
    (tmp_path / 'pass"wd').write_text("")
    (tmp_path / "session.key").write_text("ab" * 32 + "\n")
    (tmp_path / "session.key").chmod(0o600)
    conf = generate(tmp_path, uci.replace("DIR", str(tmp_path)))
    assert "syslog" not in conf
    assert r'log-file = "/tmp/wsgate \"quoted\".log";' in conf
    assert "exec_limit = 5;" in conf
    assert 'addr = "127.0.0.1";' in conf and 'addr = "::1";' in conf
    assert 'modes = { echo = "framed"; raw = "stream"; };' in conf
    assert ('links = ( { origin = "mqtt"; type = "tcp"; destination = "127.0.0.1"; port = 1883; },'
            ' { origin = "v6"; type = "tcp"; destination = "::1"; port = 8883; },'
            ' { origin = "dev/echo"; type = "unix"; destination = "/run/echo dev.sock"; },'
            ' { origin = "console"; type = "tty"; destination = "/dev/ttyS0"; baud = 9600; frame = "7E1"; },'
            ' { origin = "usb"; type = "tty"; destination = "/dev/ttyUSB0"; baud = 115200; frame = "8N1"; },'
            ' { origin = "up"; type = "exec"; destination = "/bin/sh"; args = [ "-c", "echo*" ]; },'
            ' { origin = "pipe"; type = "fifo"; destination = "/run/d.in"; source = "/run/d.out"; } );'
            ) in conf
    assert 'allow = "^/echo,raw";' in conf and 'deny = "admin*";' in conf
    assert "denylast = true;" in conf and "context = true;" in conf
    assert 'document = { docroot = "/www/ws"; defaultpage = "index.html"; };' in conf
    assert "ping_interval_ms = 20000;" in conf and "max_message = 65536;" in conf
    assert conf.count("websocket = {") == 2
    assert (f'auth = {{ type = "Basic"; dbname = "{tmp_path}/pass\\"wd"; realm = "router";'
            ' unprotect = "^/public$"; require = "root,admins";'
            f' session_key = "{tmp_path}/session.key"; session_path = "/login"; expire = 600;'
            ' rules = ( { path = "^/admin*"; require = "root"; }, { path = "^/status$,^/logs$"; require = "ops,root"; } ); };') in conf
    effective = check(tmp_path, conf)
    for want in ["8081", "8082", "127.0.0.1", "::1", "lines", "/run/ws lan", "65536", "require = \"root,admins\";",
                 "tcp:127.0.0.1:1883", "tcp:[::1]:8883", "unix:/run/echo dev.sock",
                 "tty:/dev/ttyS0:9600,7E1", "tty:/dev/ttyUSB0:115200,8N1", "exec:/bin/sh -c echo*",
                 "fifo:/run/d.in:/run/d.out", "exec_limit = 5;"]:
        assert want in effective, f"{want!r} not in:\n{effective}"


def test_compression_options(tmp_path):
    """compression per server (one value, or NAME=VALUE entries: the file's string or group)
    and the contexts' sizes in the global section (top-level keys)."""
    uci = """
config wsgate 'global'
	option compression_window '12'
	option compression_level '9'
	option compression_memory '4M'

config server 'all'
	option port '8081'
	option compression 'permessage-deflate'

config server 'some'
	option port '8082'
	list compression 'chat=permessage-deflate'
	list compression 'raw=none'

config server 'none'
	option port '8083'
	list compression 'none'

config server 'plain'
	option port '8084'
"""
    conf = generate(tmp_path, uci)
    head = "# Generated by /etc/init.d/wsgate from /etc/config/wsgate: edit that file instead.\n"
    assert conf.startswith(head + "compression_window = 12;\ncompression_level = 9;\n"
                           'compression_memory = "4M";\nservers = ({'), conf
    sections = re.findall(r"    websocket = \{\n(.*?)    \};", conf, re.S)
    docroot = '        docroot = "/var/run/websocket";\n'
    assert sections == [
        docroot + '        compression = "permessage-deflate";\n',
        docroot + '        compression = { chat = "permessage-deflate"; raw = "none"; };\n',
        docroot + '        compression = "none";\n',
        docroot,
    ], conf
    effective = check(tmp_path, conf)
    for want in ["compression_window = 12;", "compression_level = 9;", "compression_memory = 4194304;",
                 'compression = "permessage-deflate";', 'chat = "permessage-deflate";',
                 'raw = "none";', 'compression = "none";']:
        assert want in effective, f"{want!r} not in:\n{effective}"
    # A byte count without a unit stays a number.
    conf = generate(tmp_path, "config wsgate 'global'\n\toption compression_memory '3000000'\n\n"
                              "config server\n\toption port '8080'\n")
    assert "\ncompression_memory = 3000000;\nservers = ({" in conf, conf
    check(tmp_path, conf)


@pytest.mark.parametrize("bad, message", [
    ("option compression_window 'big'", "compression_window must be a number, not 'big'"),
    ("option compression_level '-1'", "compression_level must be a number"),
    ("option compression_memory '2MB'", "compression_memory must be a number of bytes"),
    ("option compression_memory '1.5M'", "compression_memory must be a number of bytes"),
    ("option compression_memory 'M'", "compression_memory must be a number of bytes"),
])
def test_bad_global_values_are_refused_and_leave_no_file(tmp_path, bad, message):
    uci = f"config wsgate 'global'\n\t{bad}\n\nconfig server 'a'\n\toption port '9000'\n"
    r = run_init(tmp_path, uci, 'config_load wsgate; wsgate_generate "$T/wsgate.conf"')
    assert r.returncode != 0
    assert message in r.stderr
    assert not (tmp_path / "wsgate.conf").exists()


@pytest.mark.parametrize("bad, message", [
    ("option port 'eighty'", "port must be a number"),
    ("option maxclients '-1'", "maxclients must be a number"),
    ("list modes 'a b=framed'", "bad endpoint name"),
    ("option max_message '1M'", "max_message must be a number"),
    ("list link 'mqtt=udp:1.2.3.4:5'", "must be ORIGIN=tcp:HOST:PORT"),
    ("list link 'c=tty:/dev/ttyS0:fast'", "link baud must be a number"),
    ("list link 'mqtt=tcp:1.2.3.4:x'", "link port must be a number"),
    ("list link 'a b=unix:/x'", "bad origin in link"),
    ("list link 'x=exec: '", "needs a program"),
    ("list link 'p=fifo:/run/only'", "must be ORIGIN=fifo:/WRITTEN:/READ"),
    ("option auth_require 'root'", "the auth options need auth_db"),
    ("option auth_expire '60'", "the auth options need auth_db"),
    ("list auth_rule 'root'", "must be PATTERNS=GROUPS"),
    ("list compression 'a b=permessage-deflate'", "bad endpoint name in compression 'a b=permessage-deflate'"),
    ("option compression '=none'", "bad endpoint name in compression '=none'"),
    ("list compression 'permessage-deflate'\n\tlist compression 'chat=none'",
     "server 'a': compression is either one value for every endpoint or NAME=VALUE entries, not both"),
    ("list compression 'none'\n\tlist compression 'permessage-deflate'",
     "compression 'permessage-deflate': every endpoint's is already 'none'"),
])
def test_bad_uci_values_are_refused_and_leave_no_file(tmp_path, bad, message):
    # The bad value is in the first of two servers: a later good section must not hide it.
    uci = f"config server 'a'\n\t{bad}\n\nconfig server 'b'\n\toption port '9000'\n"
    r = run_init(tmp_path, uci, 'config_load wsgate; wsgate_generate "$T/wsgate.conf"')
    assert r.returncode != 0
    assert message in r.stderr
    assert not (tmp_path / "wsgate.conf").exists()


def test_no_server_section_is_an_error(tmp_path):
    r = run_init(tmp_path, "config wsgate 'global'\n\toption enabled '1'\n",
                 'config_load wsgate; wsgate_generate "$T/wsgate.conf"')
    assert r.returncode != 0 and "no 'server' section" in r.stderr


def test_start_service_runs_gateway_and_backends_with_respawn(tmp_path):
    uci = UCI_DEFAULT.read_text().replace(
        "config backend 'echo'\n\toption enabled '0'", "config backend 'echo'\n\toption enabled '1'")
    uci = uci.replace("/var/run/websocket", str(tmp_path / "run"))
    r = run_init(tmp_path, uci, "start_service")
    assert r.returncode == 0, r.stderr
    calls = (tmp_path / "procd").read_text().splitlines()
    conf = tmp_path / "var/etc/wsgate.conf"
    assert calls == [
        "open backend_echo",
        f"set command /usr/bin/websocket_echo -R {tmp_path}/run -n echo -m framed",
        "append command -u nobody",
        "set respawn 3600 5 5",
        "set stderr 1",
        "close",
        "open gateway",
        f"set command {WSGATE} -f {conf}",
        "append command --control /var/run/wsgate.ctl",
        "set respawn 3600 5 5",
        f"set file {conf}",
        "set stderr 1",
        "close",
    ]
    check(tmp_path, conf.read_text())


@pytest.mark.parametrize("option, control", [
    ("", "/var/run/wsgate.ctl"),
    ("option control '/tmp/gw.ctl'", "/tmp/gw.ctl"),
    # libuci makes no option of an empty value: '' is unset, the default.
    ("option control ''", "/var/run/wsgate.ctl"),
    ("option control '0'", None),
    ("option control 'off'", None),
])
def test_start_service_passes_the_control_socket(tmp_path, option, control):
    uci = (f"config wsgate 'global'\n\t{option}\n\n"
           "config server 'lan'\n\toption port '8080'\n")
    r = run_init(tmp_path, uci, "start_service")
    assert r.returncode == 0, r.stderr
    calls = (tmp_path / "procd").read_text().splitlines()
    conf = tmp_path / "var/etc/wsgate.conf"
    command = [c for c in calls if c.startswith(("set command", "append command"))]
    want = [f"set command {WSGATE} -f {conf}"]
    if control:
        want.append(f"append command --control {control}")
    assert command == want, calls


def test_start_service_refuses_a_relative_control_path(tmp_path):
    uci = "config wsgate 'global'\n\toption control 'wsgate.ctl'\n\nconfig server 'lan'\n\toption port '8080'\n"
    r = run_init(tmp_path, uci, "start_service")
    assert r.returncode != 0
    assert "option control must be an absolute path, or 0 for no control socket, not 'wsgate.ctl'" in r.stderr
    assert not (tmp_path / "procd").exists()


def test_disabled_service_starts_nothing(tmp_path):
    uci = UCI_DEFAULT.read_text().replace("option enabled '1'", "option enabled '0'", 1)
    r = run_init(tmp_path, uci, "start_service")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "procd").exists()


@pytest.mark.parametrize("option, message", [
    # A valid number for UCI, a mode name that wsgate --check refuses.
    ("option mode 'nonsense'", ""),
    # Names and ranges are the gateway's to check: its message names the generated line.
    ("option compression 'gzip'", 'compression: unknown compression "gzip" (permessage-deflate, none)'),
    ("list compression 'chat=zstd'", 'compression: unknown compression "zstd"'),
])
def test_start_service_refuses_a_config_the_gateway_rejects(tmp_path, option, message):
    uci = f"config server 'lan'\n\toption port '8080'\n\t{option}\n"
    r = run_init(tmp_path, uci, "start_service")
    assert r.returncode != 0
    assert message in r.stderr and "wsgate.conf:" in r.stderr, r.stderr
    assert not (tmp_path / "procd").exists()


def test_start_service_refuses_global_values_the_gateway_rejects(tmp_path):
    uci = ("config wsgate 'global'\n\toption compression_window '20'\n\n"
           "config server 'lan'\n\toption port '8080'\n")
    r = run_init(tmp_path, uci, "start_service")
    assert r.returncode != 0
    assert 'expected bits 9..=15 for "compression_window", found 20' in r.stderr, r.stderr
    assert not (tmp_path / "procd").exists()


# ---- OpenWrt: the rpcd plugin (ubus call wsgate ...) against the real gateway ------------

@pytest.fixture
def sandbox():
    """A short temp dir (a UNIX socket path has at most 108 bytes), `www` the docroot."""
    d = Path(tempfile.mkdtemp(prefix="wsgt-", dir="/tmp"))
    (d / "www").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def plugin_env(tmp: Path, global_options: str) -> dict:
    """The plugin's environment: `wsgate` the real binary, `uci` and `jsonfilter` the
    stand-ins, /etc/config/wsgate a global section with `global_options`."""
    (tmp / "bin").mkdir(exist_ok=True)
    link = tmp / "bin/wsgate"
    if not link.exists():
        link.symlink_to(Path(WSGATE).resolve())
    (tmp / "config").mkdir(exist_ok=True)
    (tmp / "config/wsgate").write_text(
        f"config wsgate 'global'\n{global_options}\nconfig server 'lan'\n\toption port '8080'\n")
    return dict(os.environ, UCI_CONFIG_DIR=str(tmp / "config"),
                PATH=f"{tmp}/bin:{HERE}/openwrt/bin:{os.environ['PATH']}")


def plugin(env: dict, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The plugin run as rpcd runs it: executed, the call's arguments on standard input."""
    return subprocess.run([str(RPCD), *args], input=stdin, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def running(sandbox):
    """A gateway with --control on the sandbox's ctl.sock and a framed echo backend; the
    plugin's environment pointing at that socket through UCI."""
    echo = harness.EchoBackend(sandbox / "www", mode="framed")
    sock = sandbox / "ctl.sock"
    g = harness.Gateway(sandbox / "www", m="framed", control=sock, ping_interval="0")
    try:
        yield g, plugin_env(sandbox, f"\toption control '{sock}'\n")
    finally:
        alive = g.alive()
        g.stop()
        echo.stop()
        print(f"---- wsgate stderr ----\n{g.log_text()}")
        assert alive, "the gateway died during the test"


def test_rpcd_plugin_lists_its_methods(sandbox):
    r = plugin(plugin_env(sandbox, ""), "list")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"status": {}, "drop": {"id": "String", "code": 32}}
    r = plugin(plugin_env(sandbox, ""), "nonsense")
    assert r.returncode == 2 and "usage" in r.stderr


def test_rpcd_plugin_status_shows_a_connection_and_drop_closes_it(running):
    g, env = running
    client = harness.ws_connect(g.url("/echo"))
    try:
        client.send("hello")
        assert client.recv(timeout=5) == "hello"

        r = plugin(env, "call", "status", stdin="{}")
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(r.stdout)
        assert st["pid"] == g.pid and st["listeners"][0]["listen"] == f"127.0.0.1:{g.port}"
        port = client.socket.getsockname()[1]
        (conn,) = [c for c in st["connections"] if c["peer"] == f"127.0.0.1:{port}"]
        assert (conn["state"], conn["path"], conn["mode"], conn["msgs_up"]) == ("open", "echo", "framed", 1)

        # rpcd writes the arguments as one JSON object, without a newline.
        r = plugin(env, "call", "drop", stdin=json.dumps({"id": conn["id"], "code": 4000}))
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout) == {"dropped": conn["id"], "code": 4000}
        with pytest.raises(ConnectionClosed) as e:
            client.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 4000
        g.wait_line(rf"conn={conn['id']} peer=\S+ dropped with 4000 by the control socket")

        # Gone: the gateway's answer comes back as the error.
        r = plugin(env, "call", "drop", stdin=json.dumps({"id": conn["id"]}))
        assert r.returncode == 1
        assert "no such connection" in json.loads(r.stdout)["error"], r.stdout
    finally:
        client.close()


def test_rpcd_plugin_drop_without_a_code_closes_with_1000(running):
    g, env = running
    client = harness.ws_connect(g.url("/echo"))
    try:
        r = plugin(env, "call", "status")
        (conn,) = json.loads(r.stdout)["connections"]
        r = plugin(env, "call", "drop", stdin=json.dumps({"id": conn["id"]}))
        assert json.loads(r.stdout) == {"dropped": conn["id"], "code": 1000}, r.stdout + r.stderr
        with pytest.raises(ConnectionClosed) as e:
            client.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1000
    finally:
        client.close()


@pytest.mark.parametrize("args, message", [
    ({}, "drop needs an id"),
    ({"id": "--control", "code": 1000}, "id must be INDEX:GENERATION as status shows it, not '--control'"),
    ({"id": "1:"}, "id must be INDEX:GENERATION"),
    ({"id": "x:1"}, "id must be INDEX:GENERATION"),
    ({"id": "1:1", "code": "-1"}, "code must be a close code (a number), not '-1'"),
    ({"id": "1:1", "code": 1005}, "a close code is 1000-1003, 1007-1014 or 3000-4999"),
])
def test_rpcd_plugin_drop_refuses_bad_arguments(running, args, message):
    g, env = running
    r = plugin(env, "call", "drop", stdin=json.dumps(args))
    assert r.returncode == 1
    assert message in json.loads(r.stdout)["error"], r.stdout


def test_rpcd_plugin_without_a_gateway_answers_an_error(sandbox):
    # A quote and a backslash in the message: the reply is still JSON, the message intact.
    sock = sandbox / 'no "such\\ gw.sock'
    env = plugin_env(sandbox, f"\toption control '{sock}'\n")
    for args, stdin in [(("call", "status"), "{}"), (("call", "drop"), '{"id":"0:1"}')]:
        r = plugin(env, *args, stdin=stdin)
        assert r.returncode == 1
        err = json.loads(r.stdout)["error"]
        assert err.startswith(f"control socket {sock}: "), err
    r = plugin(env, "call", "restart")
    assert r.returncode == 1 and json.loads(r.stdout) == {"error": "unknown method 'restart' (status, drop)"}
    # Turned off in UCI: said so, wsgate not asked.
    r = plugin(plugin_env(sandbox, "\toption control '0'\n"), "call", "status")
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"] == "the gateway has no control socket (uci wsgate.global.control is '0')"


def test_rpcd_plugin_uses_the_default_socket_when_uci_names_none(sandbox):
    """Unset (or '', which UCI drops): the init script's default, /var/run/wsgate.ctl."""
    if Path("/var/run/wsgate.ctl").exists():
        pytest.skip("a gateway of this machine has /var/run/wsgate.ctl")
    for options in ["", "\toption control ''\n"]:
        r = plugin(plugin_env(sandbox, options), "call", "status")
        assert r.returncode == 1
        assert json.loads(r.stdout)["error"].startswith("control socket /var/run/wsgate.ctl: "), r.stdout
    init = INIT.read_text()
    assert "\nCONTROL=/var/run/wsgate.ctl\n" in init and "\nCONTROL=/var/run/wsgate.ctl\n" in RPCD.read_text()
    ctl_rs = (ROOT / "src/ctl.rs").read_text()
    assert 'pub const DEFAULT_CONTROL: &str = "/var/run/wsgate.ctl";' in ctl_rs


def makefile_define(name: str) -> str:
    """The body of `define NAME` ... `endef` in board/openwrt/Makefile."""
    text = (ROOT / "board/openwrt/Makefile").read_text()
    m = re.search(rf"^define {re.escape(name)}\n(.*?)^endef$", text, re.M | re.S)
    assert m, f"no define {name}"
    return m.group(1)


def test_openwrt_package_installs_the_rpcd_plugin_and_its_acl():
    install = makefile_define("Package/wsgate/install")
    lines = [ln.strip() for ln in install.splitlines()]
    assert "$(INSTALL_DIR) $(1)/usr/libexec/rpcd $(1)/usr/share/rpcd/acl.d" in lines
    # INSTALL_BIN is install -m0755: rpcd runs only executable files of /usr/libexec/rpcd.
    assert "$(INSTALL_BIN) ./files/wsgate.rpcd $(1)/usr/libexec/rpcd/wsgate" in lines
    assert "$(INSTALL_DATA) ./files/wsgate.acl.json $(1)/usr/share/rpcd/acl.d/wsgate.json" in lines
    # Every file installed from files/ is there; the plugin is executable in the tree too.
    for f in re.findall(r"\./files/(\S+)", install):
        assert (ROOT / "board/openwrt/files" / f).is_file(), f
    assert os.access(RPCD, os.X_OK)
    postinst = makefile_define("Package/wsgate/postinst")
    assert "/etc/init.d/rpcd reload" in postinst and "IPKG_INSTROOT" in postinst

    # The ACL grants the plugin's methods: status to read, drop to write.
    acl = json.loads(ACL.read_text())
    group = acl["luci-app-wsgate"]
    assert group["read"] == {"ubus": {"wsgate": ["status"]}}
    assert group["write"] == {"ubus": {"wsgate": ["drop"]}}
    methods = json.loads(subprocess.run([str(RPCD), "list"], capture_output=True, text=True,
                                        check=True).stdout)
    assert sorted(methods) == sorted(group["read"]["ubus"]["wsgate"] + group["write"]["ubus"]["wsgate"])


# ---- Buildroot: S50wsgate with the real binary -------------------------------------------

def sysv(tmp: Path, action: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WSGATE_BIN=WSGATE, WSGATE_CONF=str(tmp / "wsgate.conf"),
               PIDFILE=str(tmp / "run/wsgate.pid"), WSGATE_DEFAULTS=str(tmp / "default"))
    return subprocess.run(["sh", str(SYSV), action], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(shutil.which("start-stop-daemon") is None, reason="needs start-stop-daemon")
def test_sysv_script_starts_reloads_and_stops_the_gateway(tmp_path):
    # Port 0: the kernel picks one and the gateway says which in its log, so no other process
    # can take it between a pick and the bind.
    (tmp_path / "ws").mkdir()
    conf = f'servers = ({{ port = 0; addr = "127.0.0.1"; websocket = {{ docroot = "{tmp_path}/ws"; }}; }});\n'
    (tmp_path / "wsgate.conf").write_text(conf)
    # Log to a file, not syslog: the test machine may have no /dev/log.
    (tmp_path / "default").write_text(f'WSGATE_ARGS="-L {tmp_path}/wsgate.log"\n')

    r = sysv(tmp_path, "start")
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    pid = int((tmp_path / "run/wsgate.pid").read_text())
    assert Path(f"/proc/{pid}/exe").resolve() == Path(WSGATE).resolve()
    port = None
    deadline = time.monotonic() + 10
    while port is None and time.monotonic() < deadline:
        log = tmp_path / "wsgate.log"
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text() if log.exists() else "")
        port = int(m.group(1)) if m else time.sleep(0.05)
    assert port, (tmp_path / "wsgate.log").read_text()
    socket.create_connection(("127.0.0.1", port), timeout=5).close()  # it listens
    assert "already running" in sysv(tmp_path, "start").stdout
    assert sysv(tmp_path, "status").returncode == 0

    r = sysv(tmp_path, "reload")
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    time.sleep(0.3)
    assert Path(f"/proc/{pid}").exists()  # SIGHUP reloads, the process stays

    r = sysv(tmp_path, "stop")
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    assert not Path(f"/proc/{pid}").exists()
    assert not (tmp_path / "run/wsgate.pid").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    assert sysv(tmp_path, "status").returncode == 3
    assert "not running" in sysv(tmp_path, "stop").stdout
    log = (tmp_path / "wsgate.log").read_text()
    assert log, "the gateway logged nothing to -L"

    # restart from stopped, then stop again
    assert sysv(tmp_path, "restart").returncode == 0
    pid2 = int((tmp_path / "run/wsgate.pid").read_text())
    assert pid2 != pid
    assert sysv(tmp_path, "stop").returncode == 0
    assert not Path(f"/proc/{pid2}").exists()


def test_sysv_script_refuses_a_bad_config(tmp_path):
    (tmp_path / "wsgate.conf").write_text("servers = ( { port = ; } );\n")
    r = sysv(tmp_path, "start")
    assert r.returncode != 0 and "FAIL" in r.stdout
    assert not (tmp_path / "run/wsgate.pid").exists()


# ---- systemd -----------------------------------------------------------------------------

def test_systemd_unit_commands_are_the_gateways(tmp_path):
    unit = (ROOT / "board/systemd/wsgate.service").read_text()
    keys = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert keys["ExecStart"] == "/usr/bin/wsgate -f /etc/wsgate.conf"
    assert keys["Type"] == "simple" and keys["KillSignal"] == "SIGTERM"
    assert "[Install]" in unit and keys["WantedBy"] == "multi-user.target"
    # The flags the unit passes exist: run them against the Buildroot default config.
    conf = ROOT / "board/buildroot/wsgate.conf"
    r = subprocess.run([WSGATE, "--check", "-f", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("systemd-analyze"):
        # verify checks that the commands exist: point them at the built binary.
        local = tmp_path / "wsgate.service"
        local.write_text(unit.replace("/usr/bin/wsgate", WSGATE).replace("/etc/wsgate.conf", str(conf)))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)],
                           capture_output=True, text=True)
        assert "wsgate.service:" not in r.stderr, r.stderr
