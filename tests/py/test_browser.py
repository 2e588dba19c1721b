"""The demo pages in headless Chromium, served by the demo configuration itself.

`demo` fills board/demo/wsgate.conf.in and board/demo/init.d/*.in the way scripts/demo.sh
does and runs the gateway from that file: its static pages, and its init_d starting the
sample servers. The tests then use the pages as a person would: two pages chat, a page adds a
user, logs in and changes a password, a page shows the system information, a page queries the
demo database and, logged in as the administrator, writes to it.

Each test runs once per scheme in SCHEMES: ws:// from pages over http://, and wss:// from
pages over https:// (the demo's TLS listener, with a certificate made here; Chromium is
started trusting that certificate's key, and certificate errors are not ignored).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import ssl
import subprocess

from browser import launch, spki_pin_arg
from harness import REPO_ROOT, Child, gateway_bin, recv_until, session_token, wait_until, ws_connect

SCHEMES = ["ws", "wss"]
PAGE_SCHEME = {"ws": "http", "wss": "https"}



class Demo:
    def __init__(self, scheme: str, port: int, run: Path, gateway: Child, cert: Path):
        self.scheme = scheme
        # For a client of our own: verify the demo's certificate over wss://.
        self.client_kw = {"ssl": ssl.create_default_context(cafile=str(cert))} if scheme == "wss" else {}
        self.port = port
        self.run = run
        self.gateway = gateway

    def page(self, name: str) -> str:
        return f"{PAGE_SCHEME[self.scheme]}://127.0.0.1:{self.port}/{name}"

    def ws(self, endpoint: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{endpoint}"


@pytest.fixture(scope="module")
def demo_cert(tmp_path_factory):
    """The demo's certificate, as scripts/demo.sh makes it (self-signed, for 127.0.0.1)."""
    d = tmp_path_factory.mktemp("demo-cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-keyout", str(d / "demo.key"), "-out", str(d / "demo.crt"),
                    "-subj", "/CN=wsgate demo", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return d / "demo.crt", d / "demo.key"


@pytest.fixture(scope="module")
def chromium(demo_cert):
    """Chromium that accepts the demo certificate's key and no other untrusted certificate."""
    with launch(extra_args=[spki_pin_arg(demo_cert[0])]) as browser:
        yield browser


@pytest.fixture(params=SCHEMES)
def demo(request, sandbox, demo_cert):
    scheme = request.param
    src = REPO_ROOT / "board/demo"
    work = sandbox / "demo"
    run = work / "run"
    (work / "init.d").mkdir(parents=True)
    run.mkdir()
    # Port 0 on both listeners: the kernel picks, and the gateway announces what it got, in
    # the config's order (plain, then TLS), so no other process can take a port in between.
    subst = {
        "@DEMO@": str(work),
        "@SRC@": str(src),
        "@RUN@": str(run),
        "@BIN@": str(Path(gateway_bin()).parent),
        "@PORT@": "0",
        "@TLSPORT@": "0",
        "@CERT@": str(demo_cert[0]),
        "@KEY@": str(demo_cert[1]),
    }

    def fill(template: Path, out: Path) -> None:
        text = template.read_text()
        for key, value in subst.items():
            text = text.replace(key, value)
        out.write_text(text)

    fill(src / "wsgate.conf.in", work / "wsgate.conf")
    for script in sorted((src / "init.d").glob("*.in")):
        out = work / "init.d" / script.stem
        fill(script, out)
        out.chmod(0o755)
    g = Child([gateway_bin(), "-f", str(work / "wsgate.conf"), "-v"], "wsgate")
    try:
        port, tls_port = g.listening_ports(2, 15)
        yield Demo(scheme, tls_port if scheme == "wss" else port, run, g, demo_cert[0])
    finally:
        g.stop()
        print(f"---- wsgate stderr ----\n{g.log_text()}")
        log = run / "samples.log"
        if log.exists():
            print(f"---- samples.log ----\n{log.read_text()}")
        # The init_d stop script removes the pid files of what it stopped; anything left
        # behind is stopped here and fails the test.
        leftovers = sorted(run.glob("*.pid"))
        for pid_file in leftovers:
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
        assert not leftovers, f"init_d stop left {leftovers}"


def test_two_pages_chat(demo, browser_page):
    from playwright.sync_api import expect

    alice, bob = browser_page(), browser_page()
    for page, nick in [(alice, "alice"), (bob, "bob")]:
        page.goto(demo.page("webchat.html"))
        page.fill("#nick", nick)
        page.click("#connect")
        expect(page.locator("#state")).to_have_text(f"joined as {nick}")
    expect(alice.locator("#log")).to_contain_text("bob joined")

    alice.fill("#text", "hello bob")
    alice.press("#text", "Enter")
    expect(bob.locator("#log .msg")).to_have_text(["alice: hello bob"])
    bob.fill("#text", "hi alice")
    bob.press("#text", "Enter")
    expect(alice.locator("#log .msg")).to_have_text(["bob: hi alice"])

    # A private message (WSPrivate) and a third page that must not see it.
    carol = browser_page()
    carol.goto(demo.page("webchat.html"))
    carol.fill("#nick", "carol")
    carol.click("#connect")
    expect(carol.locator("#state")).to_have_text("joined as carol")
    bob.fill("#text", "/msg alice just for you")
    bob.press("#text", "Enter")
    expect(alice.locator("#log .private")).to_have_text(["bob (private): just for you"])
    alice.fill("#text", "everyone")
    alice.press("#text", "Enter")
    expect(carol.locator("#log .msg")).to_have_text(["alice: everyone"])
    expect(bob.locator("#log .msg")).to_have_text(["alice: hello bob", "alice: everyone"])


def test_auth_page_logs_in_and_changes_the_password(demo, browser_page):
    from playwright.sync_api import expect

    page = browser_page()
    page.goto(demo.page("webauth.html"))
    expect(page.locator("#state")).to_have_text("connected to /auth")
    result = page.locator("#result")

    # First-run setup: the first user is the administrator.
    page.fill("#adduser-user", "admin")
    page.fill("#adduser-passwd", "first-pw")
    page.click("#adduser-go")
    expect(result).to_have_text("user added")

    page.fill("#login-user", "admin")
    page.fill("#login-passwd", "wrong")
    page.click("#login-go")
    expect(result).to_have_text("error -32001: authentication failed")
    page.fill("#login-passwd", "first-pw")
    page.click("#login-go")
    expect(result).to_contain_text('"group": "root"')

    page.fill("#passwd-user", "admin")
    page.fill("#passwd-old", "first-pw")
    page.fill("#passwd-new", "second-pw")
    page.fill("#passwd-confirm", "second-pw")
    page.click("#passwd-go")
    expect(result).to_have_text("password changed")

    # The change is real: another client, not the page, sees the new password work.
    c = ws_connect(demo.ws("auth"), **demo.client_kw)
    try:
        for pw, ok in [("first-pw", False), ("second-pw", True)]:
            c.send(json.dumps({"jsonrpc": "2.0", "method": "auth", "params": {"user": "admin", "passwd": pw}, "id": 1}))
            answer = json.loads(c.recv(timeout=5))
            assert ("result" in answer) == ok, answer
    finally:
        c.close()
    assert "second-pw" not in (demo.run / "users.db").read_text()


def add_first_user(demo, user: str, password: str) -> None:
    """First-run setup through the auth plugin (the demo's user database starts empty): the
    first user is the administrator."""
    c = ws_connect(demo.ws("auth"), **demo.client_kw)
    try:
        c.send(json.dumps({"jsonrpc": "2.0", "method": "adduser", "params": {"user": user, "passwd": password}, "id": 1}))
        assert json.loads(c.recv(timeout=5))["result"]["group"] == "root"
    finally:
        c.close()


def log_in(page, demo, user: str, password: str, next_page: str) -> None:
    from playwright.sync_api import expect

    page.goto(demo.page(f"login.html?next=/{next_page}"))
    expect(page.locator("#who")).to_have_text("not logged in")
    page.fill("#user", user)
    page.fill("#password", password)
    page.click("#go")
    page.wait_for_url(demo.page(next_page))


def test_sysinfo_page_shows_the_system(demo, browser_page):
    from playwright.sync_api import expect

    add_first_user(demo, "admin", "demo-pw")
    page = browser_page()
    log_in(page, demo, "admin", "demo-pw", "websysinfo.html")
    kernel = Path("/proc/sys/kernel/osrelease").read_text().strip()
    expect(page.locator("#kernel")).to_have_text(kernel)
    expect(page.locator("#network")).to_contain_text("lo")
    expect(page.locator("#memory")).to_contain_text("/")
    expect(page.locator("#error")).to_have_text("")


def test_the_login_page_opens_the_protected_socket_until_logout_or_expiry(demo, browser_page):
    """The login page sets the session cookie; /sysinfo opens with it and its backend (the auth
    plugin, on the same login) sees the user; without it, after logout and after expiry the
    upgrade gets 401."""
    import time

    from playwright.sync_api import expect

    add_first_user(demo, "admin", "demo-pw")
    page = browser_page()
    mark = len(demo.gateway.lines)
    page.goto(demo.page("websysinfo.html"))
    # Not logged in: the gateway refuses the upgrade, and the page offers the login.
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#kernel")).to_have_text("")
    demo.gateway.wait_line(r"close /sysinfo refused 401: authentication required", 5, mark)

    # A wrong password says so and sets nothing.
    page.goto(demo.page("login.html"))
    page.fill("#user", "admin")
    page.fill("#password", "wrong")
    page.click("#go")
    expect(page.locator("#error")).to_have_text("wrong user or password")
    assert not [c for c in page.context.cookies() if c["name"] == "wsgate_session"]

    log_in(page, demo, "admin", "demo-pw", "websysinfo.html")
    kernel = Path("/proc/sys/kernel/osrelease").read_text().strip()
    expect(page.locator("#kernel")).to_have_text(kernel)
    expect(page.locator("#login")).to_be_hidden()
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "wsgate_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["secure"] == (demo.scheme == "wss")
    assert abs(cookie["expires"] - time.time() - 3600) < 120
    # The page's script cannot read it.
    assert "wsgate_session" not in page.evaluate("document.cookie")

    # The backend learns the user from the gateway (the auth plugin's whoami).
    page.goto(demo.page("webauth.html"))
    expect(page.locator("#gateway-login")).to_have_text("logged in as admin (root)")

    # Logout: refused again.
    page.goto(demo.page("login.html"))
    expect(page.locator("#who")).to_have_text("logged in as admin (root)")
    page.click("#logout")
    expect(page.locator("#who")).to_have_text("not logged in")
    mark = len(demo.gateway.lines)
    page.goto(demo.page("websysinfo.html"))
    expect(page.locator("#login")).to_be_visible()
    demo.gateway.wait_line(r"close /sysinfo refused 401", 5, mark)

    # A session past its expiry (signed with the right key): refused.
    expired = session_token(demo.run / "session.key", "admin", "root", int(time.time()) - 5)
    page.context.add_cookies([{"name": "wsgate_session", "value": expired, "url": demo.page("")}])
    mark = len(demo.gateway.lines)
    page.goto(demo.page("websysinfo.html"))
    expect(page.locator("#login")).to_be_visible()
    demo.gateway.wait_line(r"auth: session refused \(Expired\)", 5, mark)
    demo.gateway.wait_line(r"close /sysinfo refused 401", 5, mark)


@pytest.mark.parametrize("demo", ["ws"], indirect=True)
def test_a_page_of_another_origin_carrying_the_cookie_is_refused(demo, browser_page, sandbox):
    """Cross-site WebSocket hijacking: a page of another origin on the same site (another
    port: the browser sends the SameSite=Strict cookie along) opens the protected endpoint;
    the Origin policy refuses it although the cookie is valid."""
    import functools
    import http.server
    import threading

    from playwright.sync_api import expect

    add_first_user(demo, "admin", "demo-pw")
    page = browser_page()
    log_in(page, demo, "admin", "demo-pw", "websysinfo.html")
    expect(page.locator("#kernel")).not_to_have_text("")

    # What the browser sends with a WebSocket of that page to yet another port of the site:
    # it shows that the cookie goes along.
    recorder = socket.socket()
    recorder.bind(("127.0.0.1", 0))
    recorder.listen(1)
    recorder.settimeout(10)
    seen: list[bytes] = []

    def record():
        try:
            conn, _ = recorder.accept()
            seen.append(recv_until(conn, b"\r\n\r\n"))
            conn.close()
        except OSError:
            pass

    threading.Thread(target=record, daemon=True).start()
    site = sandbox / "other-origin"
    site.mkdir()
    (site / "evil.html").write_text(f"""<!doctype html><title>waiting</title><script>
new WebSocket("ws://127.0.0.1:{recorder.getsockname()[1]}/x");
var ws = new WebSocket("ws://127.0.0.1:{demo.port}/sysinfo");
ws.onopen = function () {{ document.title = "opened"; }};
ws.onclose = function () {{ document.title = "refused"; }};
</script>""")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mark = len(demo.gateway.lines)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/evil.html")
        expect(page).to_have_title("refused")
        line = demo.gateway.wait_line(r"Origin .* refused for Host", 5, mark)
        assert f"127.0.0.1:{server.server_address[1]}" in line.string
        wait_until(lambda: seen, 5)
        assert b"wsgate_session=" in seen[0], seen[0]
    finally:
        server.shutdown()
        server.server_close()
        recorder.close()


DEFLATE_PAGE = """<!doctype html><title>deflate</title><script>
// Sends each message in turn through /echo and collects the echoes: text as it is, binary as
// base64 both ways (what Playwright carries between the test and the page is JSON).
async function run(messages) {
  const ws = new WebSocket(`ws://${location.host}/echo`);
  ws.binaryType = "arraybuffer";
  const echoes = [];
  let wake = null;
  ws.onmessage = (e) => { echoes.push(e.data); if (wake) { wake(); wake = null; } };
  await new Promise((ok, ko) => { ws.onopen = ok; ws.onerror = () => ko(new Error("no open")); });
  const out = [];
  for (const m of messages) {
    if (m.text !== undefined) {
      ws.send(m.text);
    } else {
      ws.send(Uint8Array.from(atob(m.b64), (c) => c.charCodeAt(0)));
    }
    while (echoes.length === 0) { await new Promise((ok) => { wake = ok; }); }
    const e = echoes.shift();
    if (typeof e === "string") {
      out.push({text: e});
    } else {
      let s = "";
      const bytes = new Uint8Array(e);
      for (let i = 0; i < bytes.length; i += 8192) {
        s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
      }
      out.push({b64: btoa(s)});
    }
  }
  const extensions = ws.extensions;
  ws.close(1000);
  await new Promise((ok) => { ws.onclose = ok; });
  return {extensions, out};
}
</script>"""


def test_a_page_talks_through_a_compressing_gateway(sandbox, browser_page, echo_backend, gateway):
    """Chromium offers permessage-deflate and the gateway agrees (the 101 as the browser's
    network layer saw it); text and binary messages go through the echo backend both ways,
    compressed on the wire in both directions (the gateway's byte counts)."""
    import base64
    import re

    htdocs = sandbox / "htdocs"
    htdocs.mkdir()
    (htdocs / "deflate.html").write_text(DEFLATE_PAGE)
    echo_backend("framed")
    g = gateway(m="framed", compression="permessage-deflate", htdocs=str(htdocs))

    page = browser_page()
    cdp = page.context.new_cdp_session(page)
    handshakes = []
    cdp.on("Network.webSocketHandshakeResponseReceived", lambda e: handshakes.append(e["response"]))
    cdp.send("Network.enable")
    page.goto(f"http://127.0.0.1:{g.port}/deflate.html")

    texts = ["", "a", "x" * 125, "grüße aus dem router € " * 3000]
    blobs = [b"\x00", bytes(range(256)) * 256, b"sensor;42;ok\n" * 20000]
    messages = [{"text": t} for t in texts] + [{"b64": base64.b64encode(b).decode()} for b in blobs]
    result = page.evaluate("run", messages)

    assert result["extensions"].startswith("permessage-deflate"), result["extensions"]
    assert [m.get("text") for m in result["out"][: len(texts)]] == texts
    echoed = [base64.b64decode(m["b64"]) for m in result["out"][len(texts):]]
    assert echoed == blobs

    (response,) = handshakes
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert response["status"] == 101
    assert headers["sec-websocket-extensions"] == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover")

    m = g.wait_line(r"close /echo client closed \(1000\); client in (\d+) out (\d+) bytes, (\d+) msgs up", 10)
    sent = sum(len(t.encode()) for t in texts) + sum(len(b) for b in blobs)
    client_in, client_out, msgs_up = (int(x) for x in m.groups())
    assert msgs_up == len(messages)
    # The messages are repetitive: deflated, each way is a small part of their size.
    assert client_in < sent // 10, (client_in, sent)
    assert client_out < sent // 10, (client_out, sent)
    g.wait_line(r"open /echo mode=framed permessage-deflate$")


def result_table(page) -> tuple[list[str], list[list[str]]]:
    """websql.html's result table as text: the header cells and each row's cells."""
    columns, rows = page.eval_on_selector("#result", """t => [
        t.tHead.rows.length ? [...t.tHead.rows[0].cells].map(c => c.textContent) : [],
        [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent))]""")
    return columns, rows


def demo_db_query(path: Path, sql: str, params=()) -> tuple[list[str], list[list[str]]]:
    """What SQLite (Python's module, not the plugin) says a query gives, as websql.html writes
    the values: NULL, numbers in decimal, text as it is."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = db.execute(sql, params)
        columns = [d[0] for d in cur.description]
        return columns, [["NULL" if v is None else str(v) for v in row] for row in cur.fetchall()]
    finally:
        db.close()


DEMO_DB = REPO_ROOT / "board/demo/demo.db"


def test_sql_page_queries_the_demo_database(demo, browser_page):
    """websql.html as an anonymous user: the examples (a join, a bound parameter, blobs and
    big integers, list, get with where) show what the demo database holds; SQL errors and a
    write show their codes, and the write changes nothing."""
    from playwright.sync_api import expect

    page = browser_page()
    page.goto(demo.page("websql.html"))
    expect(page.locator("#state")).to_have_text("connected to /sql")
    expect(page.locator("#who")).to_have_text("not logged in: read-only")
    status, error = page.locator("#status"), page.locator("#error")

    # The join: the page's table is what SQLite says of the same query, column order kept.
    page.click("#ex-join")
    expect(status).to_have_text("6 rows")
    shown = result_table(page)
    assert shown == demo_db_query(DEMO_DB, page.input_value("#query"))
    assert shown[0] == ["hostname", "ip", "interface", "mtu", "last_seen"]
    hostnames = [row[0] for row in shown[1]]
    assert hostnames == ["laptop", "raspberrypi", "nas", "phone", "thermostat", "NULL"]

    # A bound parameter, then the same statement with another value.
    page.click("#ex-param")
    expect(status).to_have_text("2 rows")
    assert result_table(page) == demo_db_query(DEMO_DB, page.input_value("#query"), ["warning"])
    page.fill("#params", '["err"]')
    page.click("#run")
    expect(status).to_have_text("1 row")
    assert result_table(page)[1] == [["2024-05-04 09:20:00", "err", "wg0: no handshake with peer office for 180 s"]]
    page.fill("#query", "SELECT hostname FROM clients WHERE iface = :iface ORDER BY ip")
    page.fill("#params", '{"iface": "br-lan"}')
    page.click("#run")
    expect(status).to_have_text("3 rows")
    assert result_table(page)[1] == [["laptop"], ["raspberrypi"], ["nas"]]

    # A counter beyond 2^53 keeps every digit (as a JavaScript number it would end in 8), a
    # blob shows as SQL's hex literal.
    page.click("#ex-values")
    expect(status).to_have_text("10 rows")
    columns, rows = result_table(page)
    assert columns == ["name", "rx_bytes", "hostname", "client_id"]
    assert ["eth0", "12345678901234567", "NULL", "NULL"] in rows
    assert ["wlan0", "2210398877", "phone", "X'ff0c442d00010001'"] in rows
    big = page.locator("#result td.big")
    expect(big).to_have_text(["12345678901234567"])

    page.click("#ex-list")
    expect(status).to_have_text("5 rows")
    assert result_table(page) == (["name", "type"], [
        ["active_clients", "view"], ["clients", "table"], ["event_counts", "view"],
        ["events", "table"], ["interfaces", "table"]])

    page.click("#ex-get")
    expect(page.locator("#call")).to_have_text('get {"table":"clients","where":{"iface":"wlan0"}}')
    expect(status).to_have_text("3 rows")
    columns, rows = result_table(page)
    assert columns == ["mac", "ip", "hostname", "iface", "client_id", "last_seen"]
    assert [r[2] for r in rows] == ["phone", "thermostat", "NULL"]
    assert rows[1][4] == "X'01cc50e38e116a'"

    # Values and names are text, never markup.
    page.fill("#query", """SELECT '<b id="x">bold</b>' AS "<i>c</i>" """)
    page.fill("#params", "")
    page.click("#run")
    expect(status).to_have_text("1 row")
    assert result_table(page) == (["<i>c</i>"], [['<b id="x">bold</b>']])
    expect(page.locator("#result b, #result i")).to_have_count(0)

    # Errors: SQLite's, and a write by a connection that may not write.
    page.fill("#query", "SELECT * FROM routes")
    page.click("#run")
    expect(error).to_have_text("error -32020: no such table: routes")
    page.click("#ex-write")
    expect(error).to_have_text('error -32003: writing needs a login in group "root"')
    expect(status).to_have_text("")
    expect(page.locator("#result tbody tr")).to_have_count(0)
    count = "SELECT count(*) FROM events"
    assert demo_db_query(demo.run / "demo.db", count) == demo_db_query(DEMO_DB, count)


def test_sql_page_writes_as_the_administrator(demo, browser_page):
    """Logged in at the gateway as the administrator (group root), websql.html's connection
    may write: the write changes the run directory's copy of the database, and a query then
    shows the new row; the committed database is left as it was."""
    from playwright.sync_api import expect

    add_first_user(demo, "admin", "demo-pw")
    page = browser_page()
    log_in(page, demo, "admin", "demo-pw", "websql.html")
    expect(page.locator("#who")).to_have_text("admin (root): may write")

    (last,) = demo_db_query(DEMO_DB, "SELECT max(id) FROM events")[1][0]
    page.click("#ex-write")
    expect(page.locator("#status")).to_have_text("1 row changed")
    expect(page.locator("#error")).to_have_text("")
    page.fill("#query", "SELECT level, message FROM events WHERE id > ? ORDER BY id")
    page.fill("#params", f"[{last}]")
    page.click("#run")
    expect(page.locator("#status")).to_have_text("1 row")
    assert result_table(page) == (["level", "message"], [["notice", "hello from websql.html"]])

    query = f"SELECT level, message FROM events WHERE id > {last}"
    assert demo_db_query(demo.run / "demo.db", query)[1] == [["notice", "hello from websql.html"]]
    assert demo_db_query(DEMO_DB, query)[1] == []
