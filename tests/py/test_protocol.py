"""Client-side protocol errors, hand-made with raw frames: 1002, 1007, 1009."""

from __future__ import annotations

import pytest
from harness import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, close_payload, encode_frame


@pytest.fixture
def gw(echo_backend, gateway):
    echo_backend("framed")
    return gateway(m="framed", max_message="64K")


def expect_close(c, code):
    close, eof = c.wait_close(timeout=5)
    assert close is not None, "no close frame from the gateway"
    assert close.close_code == code, close
    assert not close.masked
    assert eof, "the gateway did not close TCP after the closing handshake"


def test_echo_works(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_TEXT, b"hello")
    assert c.recv_message() == (OP_TEXT, b"hello")
    c.send_close(1000)
    expect_close(c, 1000)


def test_unmasked_frame_1002(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_TEXT, b"naked", mask=False)
    expect_close(c, 1002)


def test_rsv_bits_1002(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_TEXT, b"x", rsv=4)  # RSV1 without a negotiated extension
    expect_close(c, 1002)


@pytest.mark.parametrize("opcode", [3, 7, 0xB, 0xF])
def test_reserved_opcode_1002(gw, raw, opcode):
    c = raw(gw.port, "/echo")
    c.send_frame(opcode, b"")
    expect_close(c, 1002)


def test_continuation_without_start_1002(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_CONT, b"orphan")
    expect_close(c, 1002)


def test_new_message_inside_fragmented_one_1002(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_TEXT, b"a", fin=False)
    c.send_frame(OP_TEXT, b"b")
    expect_close(c, 1002)


def test_fragmented_ping_1002(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_PING, b"x", fin=False)
    expect_close(c, 1002)


def test_long_ping_1002(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_PING, b"x" * 126)
    expect_close(c, 1002)


def test_ping_between_fragments_is_answered(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_TEXT, b"frag", fin=False)
    c.send_frame(OP_PING, b"p")
    c.send_frame(OP_CONT, b"ment")
    f = c.recv_frame()
    assert (f.opcode, f.payload) == (0xA, b"p")
    assert c.recv_message() == (OP_TEXT, b"fragment")


def test_invalid_utf8_1007(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_TEXT, b"ok \xff not ok")
    expect_close(c, 1007)


def test_invalid_utf8_across_fragments_1007(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_TEXT, b"\xe2\x82", fin=False)
    c.send_frame(OP_CONT, b"\x28")  # not a continuation byte
    expect_close(c, 1007)


def test_code_point_split_across_fragments_is_fine(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_TEXT, b"\xe2\x82", fin=False)
    c.send_frame(OP_CONT, b"\xac")
    assert c.recv_message() == (OP_TEXT, "€".encode())


def test_invalid_utf8_in_close_reason_1007(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(0x8, b"\x03\xe8\xff")
    expect_close(c, 1007)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_invalid_close_code_1002(gw, raw, code):
    c = raw(gw.port, "/echo")
    c.send_frame(0x8, close_payload(code))
    expect_close(c, 1002)


def test_one_byte_close_payload_1002(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(0x8, b"\x03")
    expect_close(c, 1002)


def test_message_too_big_1009(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_frame(OP_BINARY, b"x" * (64 * 1024 + 1))
    expect_close(c, 1009)


def test_fragmented_message_too_big_1009(gw, raw):
    c = raw(gw.port, "/echo")
    for _ in range(16):
        c.send_frame(OP_BINARY if _ == 0 else OP_CONT, b"y" * 4096, fin=False)
    c.send_frame(OP_CONT, b"z")
    expect_close(c, 1009)


def test_huge_length_header_1009(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_raw(b"\x82\xff" + (1 << 62).to_bytes(8, "big") + b"\x00\x00\x00\x00")
    expect_close(c, 1009)


def test_message_at_limit_passes(gw, raw):
    c = raw(gw.port, "/echo")
    data = bytes(range(256)) * 256  # exactly 64 KiB
    c.send_frame(OP_BINARY, data)
    assert c.recv_message() == (OP_BINARY, data)


def test_close_echoes_code(gw, raw):
    c = raw(gw.port, "/echo")
    c.send_close(4123, "app reason")
    expect_close(c, 4123)


def test_byte_by_byte_frames(gw, raw):
    import time

    c = raw(gw.port, "/echo")
    frame = encode_frame(OP_TEXT, b"slowly")
    for i in range(len(frame)):
        c.send_raw(frame[i:i + 1])
        time.sleep(0.01)
    assert c.recv_message() == (OP_TEXT, b"slowly")


def test_pings_are_answered(gw, raw):
    """RFC 6455 5.5.3: pongs may be coalesced, but the latest ping is answered."""
    c = raw(gw.port, "/echo")
    for i in range(5):
        c.send_frame(OP_PING, bytes([i]))
    got = []
    while bytes([4]) not in got:
        f = c.recv_frame()
        assert f is not None, got
        if f.opcode == 0xA:
            got.append(f.payload)
    assert got == sorted(got), got
