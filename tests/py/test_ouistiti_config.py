"""ouistiti configurations as routers ship them, read by the real gateway binary: a server whose
protection wsgate cannot give is refused at its line; ouistiti's file store is never served;
the Buildroot layout (a relative config_d, -W /) loads; messages name the file and line of
the setting, included files too; --check prints only what runs."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request

from harness import Child, EchoBackend, free_port, gateway_bin


def run(args, cwd=None, timeout=10):
    return subprocess.run([gateway_bin(), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def line_of(path, needle):
    """1-based line number of the first line of `path` containing `needle`."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextlib.contextmanager
def serving(port, *args):
    """wsgate started with `args`, once it listens on 127.0.0.1:`port`; stopped after."""
    g = Child([gateway_bin(), *args], "wsgate")
    try:
        g.wait_line(rf"listening on 127\.0\.0\.1:{port}", 10)
        yield g
    finally:
        g.stop()


# ouistiti's examples/ouistiti.conf, second server, with a websocket docroot of its own.
EXAMPLE = """user = "";
servers = ({{
    hostname = "www.ouistiti.net";
    addr = "127.0.0.1";
    port = {port};
    keepalivetimeout = 90;
    version = "HTTP11";
    unlock_groups = "www-data";
{auth}
    filestorage = {{
        docroot = "/";
        accepted_ext = ".html,.htm,.css,.js,.txt,*";
        ignored_ext = ".htaccess,.php";
    }};
    websocket = {{ docroot = "{docroot}"; }};
}});
"""

AUTH = """    auth = {
        unprotect = "index.html,public";
        realm = "Welcome";
        file = "shadow";
        type = "Basic";
        mode = "home";
    };"""


def test_an_auth_wsgate_cannot_honour_is_refused_at_its_line(tmp_path, docroot):
    """ouistiti's `file` storage has its own format: wsgate reads the JSON-RPC plugin's user
    database (`dbname`), and refuses rather than serve the protected server open."""
    conf = tmp_path / "ouistiti.conf"
    port = free_port()
    conf.write_text(EXAMPLE.format(port=port, docroot=docroot, auth=AUTH))
    at = line_of(conf, 'file = "shadow";')
    for args in (["--check", "-f", str(conf)], ["-f", str(conf)]):
        out = run(args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert f"{conf}:{at}:16: auth: file: wsgate reads the user database" in out.stderr, out.stderr
    # Nothing listens: the file's protected pages and WebSockets are not served open.
    status = None
    try:
        status = http_get(port, "/etc/passwd")[0]
    except (urllib.error.URLError, ConnectionError):
        pass
    assert status is None


def test_filestorage_is_never_served(tmp_path, docroot):
    conf = tmp_path / "ouistiti.conf"
    port = free_port()
    conf.write_text(EXAMPLE.format(port=port, docroot=docroot, auth=""))
    at = line_of(conf, "filestorage = {")
    with serving(port, "-f", str(conf)) as g:
        assert f"{conf}:{at}: filestorage (ouistiti's read/write file store) is not part of wsgate" in g.log_text()
        # No document: a request without Upgrade is not a WebSocket handshake, and no file
        # of the store is served.
        status, body = http_get(port, "/etc/passwd")
        assert status == 400 and b"root:" not in body, (status, body[:80])
        assert http_get(port, "/")[0] == 400


BUILDROOT_MAIN = """user = "";
mimetypes = ({ ext = ".mp3"; mime = "audio/mp3"; }, { ext = ".mp4,.m4v"; mime = "video/mp4"; });
config_d = "etc/ouistiti/ouistiti.d";
"""

BUILDROOT_SERVER = """servers = ({{
    hostname = "router.local";
    addr = "127.0.0.1";
    port = {port};
    document = {{ docroot = "srv/www/htdocs"; }};
    websocket = {{ docroot = "srv/www/websocket"; mode = "framed"; }};
}});
"""


def buildroot_tree(root, port):
    etc = root / "etc/ouistiti"
    (etc / "ouistiti.d").mkdir(parents=True)
    (root / "srv/www/htdocs").mkdir(parents=True)
    (root / "srv/www/websocket").mkdir(parents=True)
    (root / "srv/www/htdocs/index.html").write_text("<p>router</p>")
    (etc / "ouistiti.conf").write_text(BUILDROOT_MAIN)
    (etc / "ouistiti.d/default.conf").write_text(BUILDROOT_SERVER.format(port=port))
    return etc / "ouistiti.conf"


def test_buildroot_layout_loads_from_the_working_directory(sandbox, ws):
    root = sandbox / "rootfs"
    port = free_port()
    conf = buildroot_tree(root, port)
    elsewhere = sandbox / "www"

    # Started from another directory without -W: the config_d is looked for there, and the
    # failure comes with the warning that explains it.
    out = run(["--check", "-f", str(conf)], cwd=elsewhere)
    assert out.returncode == 2, out.stdout
    missing = f"{conf}:3: config_d {elsewhere}/etc/ouistiti/ouistiti.d does not exist"
    assert missing in out.stderr, out.stderr
    assert out.stderr.index(missing) < out.stderr.index("nothing to relay"), out.stderr

    # -W ROOT, as ouistiti's init script runs it with -W /: every relative path resolves there.
    out = run(["--check", "-f", str(conf), "-W", str(root)], cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert f"port = {port};" in out.stdout and 'docroot = "srv/www/websocket";' in out.stdout

    # A relative -f is named from where wsgate starts, not from -W's directory.
    out = run(["--check", "-f", "etc/ouistiti/ouistiti.conf", "-W", str(root)], cwd=root)
    assert out.returncode == 0, out.stderr

    echo = EchoBackend(root / "srv/www/websocket", "echo", "framed")
    try:
        with serving(port, "-f", str(conf), "-W", str(root)):
            c = ws(f"ws://127.0.0.1:{port}/echo")
            c.send("through the rootfs")
            assert c.recv(timeout=5) == "through the rootfs"
            assert http_get(port, "/") == (200, b"<p>router</p>")
    finally:
        echo.stop()

    out = run(["--check", "-f", str(conf), "-W", str(sandbox / "absent")])
    assert out.returncode == 2 and f"-W {sandbox}/absent:" in out.stderr, out.stderr


def test_messages_name_the_included_file_and_line(tmp_path, docroot):
    port = free_port()
    d = tmp_path / "ouistiti.d"
    d.mkdir()
    main = tmp_path / "main.conf"
    # A long main file, so that an included file's line number cannot be mistaken for its own.
    main.write_text("user = \"\";\n" + "# padding\n" * 60 + f'config_d = "{d}";\n')
    inc = d / "default.conf"
    inc.write_text(
        "servers = ({\n"
        + "    # padding\n" * 10
        + f'    addr = "127.0.0.1";\n    port = {port};\n'
        + '    document = { docroot = "/srv/www"; options = "dirlisting"; };\n'
        + f'    websocket = {{ docroot = "{docroot}"; }};\n'
        + "    cgi = { docroot = \"/srv/cgi-bin\"; };\n"
        + "}, {\n"
        + '    addr = "127.0.0.1";\n    port = 1;\n'
        + '    document = { docroot = "/srv/www"; };\n'
        + "});\n"
    )
    out = run(["--check", "-f", str(main)])
    assert out.returncode == 0, out.stderr
    cgi = line_of(inc, "cgi = {")
    second = line_of(inc, "}, {")
    assert f"{inc}:{cgi}: ouistiti module \"cgi\" is not part of wsgate" in out.stderr, out.stderr
    assert f"{inc}:1: document: directory listings are not generated" in out.stderr, out.stderr
    assert f"{inc}:{second}: server on port 1 has no websocket section: not run" in out.stderr, out.stderr
    assert f"{main}:" not in out.stderr, out.stderr
    # --check prints what runs: the second server only as a comment saying it does not.
    assert f"port = {port};" in out.stdout and "port = 1;" not in out.stdout, out.stdout
    assert f"# not run: the server at {inc}:{second} (port 1) has no websocket section" in out.stdout

    # A certificate that cannot be read is reported at the line that names it.
    inc.write_text(
        f'servers = ({{\n    port = {port};\n    websocket = {{ docroot = "{docroot}"; }};\n'
        "    tls = {\n"
        f'        crtfile = "{tmp_path}/absent.crt";\n'
        f'        keyfile = "{tmp_path}/absent.key";\n'
        "    };\n});\n"
    )
    out = run(["--check", "-f", str(main)])
    assert out.returncode == 2
    assert f"{inc}:5:19: tls: {tmp_path}/absent.crt: cannot read" in out.stderr, out.stderr


def test_a_failed_reload_logs_its_reason_and_keeps_serving(tmp_path, docroot, ws):
    conf = tmp_path / "ouistiti.conf"
    port = free_port()
    conf.write_text(EXAMPLE.format(port=port, docroot=docroot, auth=""))
    echo = EchoBackend(docroot, "echo")
    try:
        with serving(port, "-f", str(conf)) as g:
            mark = len(g.log_text())
            conf.write_text(EXAMPLE.format(port=port, docroot=docroot, auth=AUTH))
            g.proc.send_signal(1)
            at = line_of(conf, 'file = "shadow";')
            deadline = time.monotonic() + 5
            while f"{conf}:{at}:16: auth:" not in g.log_text()[mark:]:
                assert time.monotonic() < deadline, g.log_text()[mark:]
                time.sleep(0.05)
            c = ws(f"ws://127.0.0.1:{port}/echo")
            c.send("still here")
            assert c.recv(timeout=5) == "still here"
    finally:
        echo.stop()


def test_a_directory_rule_holds_for_both_spellings(tmp_path, docroot):
    """`/private` and `/private/` are one directory: a rule written for either spelling
    keeps both out."""
    htdocs = tmp_path / "htdocs"
    for d in ("private", "admin", "open"):
        (htdocs / d).mkdir(parents=True)
        (htdocs / d / "index.html").write_text(f"<p>{d}</p>")
    port = free_port()
    conf = tmp_path / "site.conf"
    conf.write_text(
        f'user = "";\nservers = ({{ addr = "127.0.0.1"; port = {port};\n'
        f'  document = {{ docroot = "{htdocs}"; deny = "^/private$,^/admin/$"; }};\n'
        f'  websocket = {{ docroot = "{docroot}"; }};\n}});\n'
    )
    with serving(port, "-f", str(conf)):
        for path in ("/private", "/private/", "/admin", "/admin/"):
            assert http_get(port, path)[0] == 403, path
        for path in ("/open", "/open/"):
            assert http_get(port, path) == (200, b"<p>open</p>"), path
