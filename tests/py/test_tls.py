"""wss:// and https:// (--tls-cert / tls { } in the config file), against real TLS clients:
Python's ssl module under websockets, `openssl s_client` (TLS 1.2 and 1.3), raw sockets sending
garbage. Certificates come from a test CA made here with the openssl command."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from harness import (
    OP_BINARY,
    build_request,
    encode_frame,
    free_ports,
    parse_response_head,
    recv_until,
    record,
    rss_kb,
    try_decode_frame,
    ws_connect,
)

MiB = 1024 * 1024


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d: Path, name: str, ca: str, *, server: bool, rsa: bool = False) -> None:
    key = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl("req", "-new", *key, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", cwd=d)
    ext = d / f"{name}.ext"
    if server:
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    else:
        ext.write_text("extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", str(ext), cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA with two server certificates (ECDSA and RSA) and a client certificate, and a
    second, untrusted CA with a client certificate of its own."""
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_leaf(d, "server", "ca", server=True)
    make_leaf(d, "server2", "ca", server=True, rsa=True)
    make_leaf(d, "client", "ca", server=False)
    make_ca(d, "rogue")
    make_leaf(d, "intruder", "rogue", server=False)
    return d


def client_context(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


def tls_gateway(gateway, pki: Path, *, crt="server", **opts):
    opts.setdefault("m", "framed")
    return gateway(tls_cert=str(pki / f"{crt}.crt"), tls_key=str(pki / f"{crt}.key"), **opts)


def wss(g, pki, path="/echo", cert=None, **kw):
    return ws_connect(f"wss://localhost:{g.port}{path}", ssl=client_context(pki, cert), **kw)


def wss_echo_once(port: int, ctx: ssl.SSLContext, text: bytes = b"hello") -> bytes:
    """Upgrade over TLS and echo one message, in this thread only.

    For client certificates: websockets' sync client reads the socket in a second thread while
    the first sends the request, and with TLS 1.3 client authentication the server's
    NewSessionTicket arrives exactly then; one connection in a few hundred then never sends its
    request (seen with tcpdump: the ticket goes out, the request never comes; 2,400 handshakes
    from one thread never stalled)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(build_request(port, "/echo"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                raise ConnectionError(f"closed after {head!r}")
            head += chunk
        assert parse_response_head(head).status == 101, head
        s.sendall(encode_frame(0x1, text))
        buf = bytearray()
        while (d := try_decode_frame(buf)) is None:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the echo")
            buf += chunk
        return d[0].payload


def echo_check(c, sizes=(0, 1, 125, 126, 65535, 65536, 300_000)) -> None:
    rnd = random.Random(7)
    for n in sizes:
        data = rnd.randbytes(n)
        c.send(data)
        assert c.recv(timeout=10) == data
        text = "é" * (n // 2)
        c.send(text)
        assert c.recv(timeout=10) == text


def peer_cert_sha256(port: int, pki: Path) -> str:
    ctx = client_context(pki)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def file_sha256(pki: Path, name: str) -> str:
    der = subprocess.run(["openssl", "x509", "-in", str(pki / f"{name}.crt"), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["framed", "stream"])
def test_wss_echo_with_a_verifying_client(pki, gateway, echo_backend, mode):
    echo_backend(mode, extra=["-M", "4M"] if mode == "framed" else [])
    g = tls_gateway(gateway, pki, m=mode, max_message="4M")
    with wss(g, pki, max_size=None) as c:
        if mode == "framed":
            echo_check(c)
            big = os.urandom(3 * MiB)
            c.send(big)
            assert c.recv(timeout=20) == big
        else:
            # stream mode re-frames at buffer boundaries: compare what comes back as a stream
            data = os.urandom(200_000)
            c.send(data)
            got = b""
            while len(got) < len(data):
                got += c.recv(timeout=10)
            assert got == data
    g.wait_line(r"conn=\S+ peer=\S+ close /echo client closed \(1000\)")


def test_wss_refuses_a_client_that_does_not_trust_the_certificate(pki, gateway, echo_backend):
    echo_backend("framed")
    g = tls_gateway(gateway, pki)
    with pytest.raises(ssl.SSLCertVerificationError):
        ws_connect(f"wss://localhost:{g.port}/echo", ssl=ssl.create_default_context())
    # The client's alert ends the handshake: the gateway says so and keeps serving.
    g.wait_line(r"conn=\S+ peer=\S+ TLS handshake failed: .*(alert|certificate)", timeout=5)
    with wss(g, pki) as c:
        echo_check(c, sizes=(10,))


@pytest.mark.parametrize("version,flag", [("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")])
def test_openssl_s_client(pki, gateway, echo_backend, version, flag):
    echo_backend("framed")
    g = tls_gateway(gateway, pki, m="framed", idle_timeout="1s", close_timeout="1s")
    req = build_request(g.port, "/echo")
    # an upgrade and one masked text message; after the echo the idle timeout closes (1001)
    data = req + encode_frame(0x1, b"hello over " + version.encode())
    p = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{g.port}", "-servername", "localhost",
         flag, "-alpn", "http/1.1", "-CAfile", str(pki / "ca.crt"), "-verify_return_error",
         "-ign_eof"],
        input=data, capture_output=True, timeout=20,
    )
    out = p.stdout
    text = out.decode(errors="replace")
    assert f"New, {version}, Cipher is" in text, text
    assert "Verify return code: 0 (ok)" in text, text
    assert "ALPN protocol: http/1.1" in text, text
    at = out.find(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert at >= 0, text
    body = out[at:].split(b"\r\n\r\n", 1)[1]
    msg = b"hello over " + version.encode()
    assert body.startswith(bytes([0x81, len(msg)]) + msg), body
    assert b"\x88\x02\x03\xe9" in body, body


def test_ecdsa_and_rsa_certificates_with_their_chain(pki, gateway, echo_backend):
    echo_backend("framed")
    # RSA key, CA given as the chain: both are sent
    g = gateway(m="framed", tls_cert=str(pki / "server2.crt"), tls_key=str(pki / "server2.key"),
                tls_chain=str(pki / "ca.crt"))
    p = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{g.port}", "-servername", "localhost",
         "-showcerts", "-CAfile", str(pki / "ca.crt"), "-verify_return_error"],
        input=b"", capture_output=True, timeout=20,
    )
    out = p.stdout.decode(errors="replace")
    assert out.count("-----BEGIN CERTIFICATE-----") == 2, out
    assert "Verify return code: 0 (ok)" in out, out
    with wss(g, pki) as c:
        echo_check(c, sizes=(5, 70_000))


def test_client_certificates_when_verification_is_on(pki, gateway, echo_backend):
    echo_backend("framed")
    g = tls_gateway(gateway, pki, tls_client_ca=str(pki / "ca.crt"))
    assert wss_echo_once(g.port, client_context(pki, "client")) == b"hello"
    for cert in (None, "intruder"):
        start = len(g.lines)
        with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
            # TLS 1.3: the server judges the client's certificate after the client has
            # finished; the refusal (an alert) arrives with the first read.
            wss_echo_once(g.port, client_context(pki, cert))
        print(f"{cert}: refused: {refused.value!r}")
        m = g.wait_line(r"conn=\S+ peer=\S+ TLS handshake failed: (.*)", start=start)
        assert "certificate" in m.group(1).lower(), m.group(0)
        assert not any(" open /echo" in line for line in g.lines[start:]), g.lines[start:]
    # refused clients leave the others alone
    assert wss_echo_once(g.port, client_context(pki, "client"), b"again") == b"again"


def test_plain_http_on_the_tls_port_gets_400_in_clear(pki, gateway, echo_backend):
    echo_backend("framed")
    g = tls_gateway(gateway, pki)
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        s.sendall(build_request(g.port, "/echo"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            assert chunk, buf
            buf += chunk
        assert parse_response_head(buf).status == 400
    g.wait_line(r"conn=\S+ peer=\S+ plain HTTP on a TLS port")
    g.wait_line(r"close / refused 400: plain HTTP request on a TLS port")


def client_hello(port: int) -> bytes:
    """The first flight of a real client (Python's ssl), captured through a memory BIO."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_garbage_and_truncated_records_close_only_that_connection(pki, gateway, echo_backend):
    echo_backend("framed")
    g = tls_gateway(gateway, pki, m="framed", handshake_timeout="2s")
    with wss(g, pki) as good:
        echo_check(good, sizes=(10,))
        hello = client_hello(g.port)
        cases = {
            "random bytes": os.urandom(600),
            "a TLS header then garbage": b"\x16\x03\x01\x00\x40" + os.urandom(64),
            "a record claiming 16 MB": b"\x17\x03\x03\xff\xff" + os.urandom(100),
            "a truncated ClientHello, then EOF": hello[: len(hello) // 2],
            "a ClientHello then garbage": hello + os.urandom(200),
        }
        for what, payload in cases.items():
            start = len(g.lines)
            with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
            m = g.wait_line(r"conn=(\S+) peer=\S+ close / (.*)\(", start=start, timeout=5)
            assert "refused" not in m.group(2), (what, m.group(0))
            # the open connection is untouched
            echo_check(good, sizes=(100,))
    # a client that opens TCP and says nothing is dropped at the handshake timeout
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        t0 = time.monotonic()
        s.settimeout(6)
        assert s.recv(100) == b""
        assert 1.5 < time.monotonic() - t0 < 5
    g.wait_line(r"close / handshake timeout")
    assert g.alive()


def test_static_pages_over_https(pki, gateway, echo_backend, tmp_path):
    root = tmp_path / "htdocs"
    root.mkdir()
    (root / "index.html").write_text("<h1>secure router</h1>\n")
    big = os.urandom(700_000)
    (root / "big.bin").write_bytes(big)
    echo_backend("framed")
    g = tls_gateway(gateway, pki, htdocs=str(root))
    ctx = client_context(pki)
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            for path, want in (("/", b"<h1>secure router</h1>\n"), ("/big.bin", big)):
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n".encode())
                buf = b""
                while b"\r\n\r\n" not in buf:
                    buf += s.recv(65536)
                resp = parse_response_head(buf)
                assert resp.status == 200
                n = int(resp.header("Content-Length"))
                body = resp.leftover
                while len(body) < n:
                    chunk = s.recv(65536)
                    assert chunk
                    body += chunk
                assert body == want
            # and the same connection can still be upgraded? No: a new one is (browsers do so).
    with wss(g, pki) as c:
        echo_check(c, sizes=(42,))


def test_certificate_rotation_on_sighup(pki, gateway, echo_backend, tmp_path):
    echo_backend("framed")
    live = tmp_path / "live"
    live.mkdir()
    for ext in ("crt", "key"):
        (live / f"cert.{ext}").write_bytes((pki / f"server.{ext}").read_bytes())
    g = gateway(m="framed", tls_cert=str(live / "cert.crt"), tls_key=str(live / "cert.key"))
    assert peer_cert_sha256(g.port, pki) == file_sha256(pki, "server")
    with wss(g, pki) as old:
        echo_check(old, sizes=(10, 100_000))
        # the renewed certificate (another key type, even) arrives; SIGHUP
        for ext in ("crt", "key"):
            (live / f"cert.{ext}").write_bytes((pki / f"server2.{ext}").read_bytes())
        start = len(g.lines)
        os.kill(g.pid, signal.SIGHUP)
        g.wait_line(r"certificate reloaded", start=start)
        assert peer_cert_sha256(g.port, pki) == file_sha256(pki, "server2")
        echo_check(old, sizes=(10, 100_000))  # the open connection kept going
        with wss(g, pki) as new:
            echo_check(new, sizes=(10,))
        # a broken renewal: the key of another certificate. The old one stays, with the reason.
        (live / "cert.key").write_bytes((pki / "client.key").read_bytes())
        start = len(g.lines)
        os.kill(g.pid, signal.SIGHUP)
        g.wait_line(r"refused, the old one stays: .*new certificate: .*does not match", start=start)
        assert peer_cert_sha256(g.port, pki) == file_sha256(pki, "server2")
        echo_check(old, sizes=(10,))
    assert g.alive()


def test_client_that_does_not_read_over_tls_keeps_memory_bounded(pki, gateway, py_backend):
    b = py_backend("py")
    g = tls_gateway(gateway, pki, m="framed")
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", g.port))
    s = client_context(pki).wrap_socket(raw, server_hostname="localhost")
    s.sendall(build_request(g.port, "/py"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert parse_response_head(head).status == 101
    backend = b.accept()
    time.sleep(0.3)
    base = rss_kb(g.pid)
    sent = [0]
    stop = threading.Event()

    def push():
        backend.settimeout(1)
        chunk = record(OP_BINARY, b"z" * 65536)
        while not stop.is_set() and sent[0] < 16 * MiB:
            try:
                backend.sendall(chunk)
                sent[0] += 65536
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return

    t = threading.Thread(target=push, daemon=True)
    t.start()
    peak = base
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        peak = max(peak, rss_kb(g.pid))
        if sent[0] != last:
            last, since = sent[0], time.monotonic()
        elif time.monotonic() - since > 1.0:
            break
        time.sleep(0.05)
    stop.set()
    assert sent[0] < 16 * MiB, "the gateway read the backend although the client did not read"
    assert peak - base < 4096, f"RSS grew {peak - base} KiB while the client did not read"
    # now read: what the pipeline held arrives intact, as one fragmented message per record
    s.settimeout(10)
    got = 0
    buf = bytearray()
    expect_start = True
    while got < sent[0] - 8 * 65536:
        chunk = s.recv(1 << 20)
        assert chunk
        buf += chunk
        while (d := try_decode_frame(buf)) is not None:
            frame, n = d
            del buf[:n]
            assert frame.opcode == (OP_BINARY if expect_start else 0), frame.opcode
            assert frame.payload == b"z" * len(frame.payload)
            got += len(frame.payload)
            expect_start = frame.fin
    s.close()
    backend.close()


def test_rss_per_idle_tls_connection(pki, gateway, echo_backend):
    """Goal: an idle wss:// connection costs at most 24 kB of gateway RSS."""
    echo_backend("framed")
    g = tls_gateway(gateway, pki, c=300, ping_interval="0")
    ctx = client_context(pki)
    n = 200

    def open_one():
        raw = socket.create_connection(("127.0.0.1", g.port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(build_request(g.port, "/echo"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert parse_response_head(head).status == 101
        # one message each way, so that every buffer has been used (and given back)
        s.sendall(encode_frame(0x2, b"m" * 3000))
        buf = bytearray()
        while (d := try_decode_frame(buf)) is None:
            buf += s.recv(65536)
        assert d[0].payload == b"m" * 3000
        return s

    keep = [open_one()]
    time.sleep(0.5)
    base = rss_kb(g.pid)
    keep += [open_one() for _ in range(n)]
    time.sleep(0.5)
    grown = rss_kb(g.pid) - base
    per = grown * 1024 / n
    print(f"RSS per idle TLS connection: {per:.0f} B ({grown} KiB for {n})")
    assert per <= 24_000, f"{per:.0f} B of RSS per idle TLS connection"
    # they are all still alive
    for s in keep[:: n // 10]:
        s.sendall(encode_frame(0x1, b"still here"))
        buf = bytearray()
        while (d := try_decode_frame(buf)) is None:
            buf += s.recv(65536)
        assert d[0].payload == b"still here"
    for s in keep:
        s.close()



def test_config_file_plain_and_tls_servers_side_by_side(pki, docroot, echo_backend, tmp_path):
    """ouistiti's `tls = { crtfile; keyfile; cachain; }` plus our `client_ca`, in a -f file
    with a plain server beside it; --check shows it; a bad key is a config error at its line."""
    from harness import Child, gateway_bin

    echo_backend("framed")
    plain, secure = free_ports(2)
    conf = tmp_path / "wsgate.conf"

    def write(keyfile: str):
        conf.write_text(f"""servers = ({{
    addr = "127.0.0.1"; port = {plain};
    websocket = {{ docroot = "{docroot}"; mode = "framed"; }};
}},{{
    addr = "127.0.0.1"; port = {secure};
    tls = {{ crtfile = "{pki}/server.crt"; keyfile = "{pki}/{keyfile}"; cachain = "{pki}/ca.crt";
             client_ca = "{pki}/ca.crt"; }};
    websocket = {{ docroot = "{docroot}"; mode = "framed"; }};
}});
""")

    write("server.key")
    check = subprocess.run([gateway_bin(), "-f", str(conf), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert f'client_ca = "{pki}/ca.crt"' in check.stdout, check.stdout
    g = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    try:
        g.wait_line(rf"listening on 127.0.0.1:{secure}", 5)
        c = ws_connect(f"ws://127.0.0.1:{plain}/echo")
        echo_check(c, sizes=(10,))
        c.close()
        assert wss_echo_once(secure, client_context(pki, "client")) == b"hello"
        # plain ws:// to the TLS port is refused in clear; no client certificate, no wss://
        with socket.create_connection(("127.0.0.1", secure), timeout=5) as s:
            s.sendall(build_request(secure, "/echo"))
            assert s.recv(100).startswith(b"HTTP/1.1 400 ")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            wss_echo_once(secure, client_context(pki))
    finally:
        g.stop()
    write("client.key")
    bad = subprocess.run([gateway_bin(), "-f", str(conf), "--check"], capture_output=True, text=True)
    assert bad.returncode == 2
    # reported at the line that names the key file, not at the server
    assert f"{conf}:6:" in bad.stderr and "does not match" in bad.stderr, bad.stderr


def test_full_gateway_answers_503_over_tls(pki, gateway, echo_backend):
    """The 503 for a client beyond -c is written before the TLS handshake has happened; it must
    still reach the client, encrypted, after the handshake."""
    echo_backend("framed")
    g = tls_gateway(gateway, pki, c=1)
    with wss(g, pki) as first:
        echo_check(first, sizes=(10,))
        raw = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        with client_context(pki).wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(build_request(g.port, "/echo"))
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                assert chunk, buf
                buf += chunk
            assert parse_response_head(buf).status == 503
        g.wait_line(r"close / refused 503: all connection slots busy")
        echo_check(first, sizes=(10,))


def test_backend_that_does_not_read_stops_reading_the_tls_client(pki, gateway, py_backend):
    """Backpressure towards the client over TLS: with a backend that does not read, the gateway
    stops decrypting, so rustls stops reading the socket and the client's sends block."""
    from harness import recv_record_message

    b = py_backend("py")
    g = tls_gateway(gateway, pki, max_message="1M")
    raw = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    s = client_context(pki).wrap_socket(raw, server_hostname="localhost")
    s.sendall(build_request(g.port, "/py"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert parse_response_head(head).status == 101
    backend = b.accept()
    backend.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    time.sleep(0.3)
    base = rss_kb(g.pid)
    payload = os.urandom(256 * 1024)
    frame = encode_frame(OP_BINARY, payload)
    sent = [0]

    def push():
        try:
            while sent[0] < 64 * MiB:
                s.sendall(frame)
                sent[0] += 1
        except OSError:
            pass

    s.settimeout(30)
    t = threading.Thread(target=push, daemon=True)
    t.start()
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 1.5:
        if sent[0] != last:
            last, since = sent[0], time.monotonic()
        time.sleep(0.05)
    assert sent[0] * len(frame) < 64 * MiB, "the gateway swallowed 64 MiB for a backend that does not read"
    assert rss_kb(g.pid) - base < 4096
    # the backend reads now: every message arrives whole and in order, and the client unblocks
    stuck = last
    deadline = time.monotonic() + 20
    while sent[0] <= stuck + 2:
        assert time.monotonic() < deadline, f"the client stayed blocked at {sent[0]} messages"
        op, data = recv_record_message(backend, timeout=10)
        assert op == OP_BINARY and data == payload
    s.close()


def tls_upgrade_status(port: int, ctx: ssl.SSLContext, path: str, headers=None) -> int:
    """The status a TLS upgrade of `path` gets, from this thread only (see wss_echo_once)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(build_request(port, path, headers))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                break
            head += chunk
        return parse_response_head(head).status


def test_client_certificates_identify_their_holder_by_subject_and_issuer(pki, gateway, py_backend, tmp_path):
    """`--auth-cert-subject/--auth-cert-issuer`: a verified client certificate whose names match
    is a login, its CN the user (REMOTE_USER), in the configured group; one whose subject does
    not match identifies nobody (401 without another credential); groups per endpoint apply."""
    for name, subj in [("device1", "/O=Acme/CN=device1"), ("device2", "/O=Other/CN=device2")]:
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{tmp_path}/{name}.key", "-out", f"{tmp_path}/{name}.csr", "-subj", subj, cwd=pki)
        (tmp_path / f"{name}.ext").write_text("extendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", f"{tmp_path}/{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{tmp_path}/{name}.crt", "-days", "2",
                "-extfile", str(tmp_path / f"{name}.ext"), cwd=pki)

    def ctx(name):
        c = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        c.load_cert_chain(str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key"))
        return c

    db = tmp_path / "passwd"
    db.write_text("")
    b = py_backend("echo")
    py_backend("admin")
    g = tls_gateway(gateway, pki, tls_client_ca=str(pki / "ca.crt"), auth_db=str(db), m="stream",
                    auth_cert_subject="^/O=Acme/CN=*$", auth_cert_issuer="^/CN=ca$", auth_cert_group="devices",
                    auth_rule=["^/admin$=root"], context=True)
    assert tls_upgrade_status(g.port, ctx("device1"), "/echo") == 101
    conn = b.accept()
    context = recv_until(conn, b"\n\n")
    assert b"REMOTE_USER=device1\nREMOTE_GROUPS=devices\nSSL_CLIENT_S_DN=/O=Acme/CN=device1\n" in context, context
    conn.close()
    # Another subject: the certificate is good for TLS, but no login.
    assert tls_upgrade_status(g.port, ctx("device2"), "/echo") == 401
    g.wait_line(r'auth: certificate "/O=Other/CN=device2" \(issuer "/CN=ca"\) not taken')
    # A path whose rule wants group root: the device's group does not open it.
    assert tls_upgrade_status(g.port, ctx("device1"), "/admin") == 403
    g.wait_line(r'auth: user "device1" not in a group allowed at /admin')
