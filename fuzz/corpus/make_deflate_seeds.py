#!/usr/bin/env python3
"""Writes the seeds of the `extensions` and `inflate` fuzz targets (docs/fuzzing.md).

extensions: a byte choosing the configured window (9 + b % 7), then header values separated
by newlines: browsers' offers and variants of them.

inflate: the target's layout (fuzz/fuzz_targets/inflate.rs, `plan`): six parameter bytes
(message limit / 16, output room / 8, flags, contexts, round-trip choices, count of frame
sizes), the frame sizes, a big-endian u16 splitting the payload into two messages, then
the payload: raw DEFLATE streams made here with zlib (wbits -15), the 4-byte tail of a sync
flush removed as a permessage-deflate sender does (RFC 7692 section 7.2.1).
"""
import json
import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


# --- extensions ---------------------------------------------------------------------------
W15, W12, W9 = bytes([6]), bytes([3]), bytes([0])
offers = {
    # Chromium's offer.
    "chrome": W15 + b"permessage-deflate; client_max_window_bits",
    # Firefox's.
    "firefox": W15 + b"permessage-deflate",
    # Safari from iOS 15 / macOS 12 (NSURLSession's WebSocket), under a 12-bit window.
    "safari": W12 + b"permessage-deflate",
    # Older Safari: WebKit's pre-standard extension, then the standard one (not accepted).
    "safari_webkit": W15 + b"x-webkit-deflate-frame",
    # Python websockets' client offer.
    "python_websockets": W12 + b"permessage-deflate; client_max_window_bits",
    "quoted": W15 + b'permessage-deflate; server_max_window_bits="10"; client_max_window_bits="1\\2"',
    "several_offers": W12
    + b"permessage-deflate; server_max_window_bits=16, permessage-deflate; "
    b"server_no_context_takeover; server_max_window_bits=9, permessage-deflate",
    "several_headers": W9
    + b"x-webkit-deflate-frame; no_context_takeover\npermessage-deflate; "
    b"client_no_context_takeover; server_max_window_bits=8\n, permessage-deflate",
    "all_params": W15
    + b"PerMessage-Deflate ;\tserver_no_context_takeover ; client_no_context_takeover; "
    b"server_max_window_bits = 11 ; client_max_window_bits=15",
    "malformed": W15 + b'permessage-deflate; a="not a token"',
}
for name, data in offers.items():
    write("extensions", name, data)


# --- inflate ------------------------------------------------------------------------------
def deflate(data, level=6, wbits=-15, finish=False, strategy=zlib.Z_DEFAULT_STRATEGY):
    z = zlib.compressobj(level, zlib.DEFLATED, wbits, 8, strategy)
    out = z.compress(data) + z.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)
    if not finish:
        assert out.endswith(b"\x00\x00\xff\xff")
        out = out[:-4]
    return out


def seed(payload1, payload2=b"", max16=255, room8=255, flags=0, ctx=0, rt=0, sizes=(125,)):
    head = bytes([max16, room8, flags, ctx, rt, len(sizes) - 1]) + bytes(sizes)
    data = head + len(payload1).to_bytes(2, "big") + payload1 + payload2
    assert len(data) <= 4096, len(data)
    return data


status = json.dumps(
    [{"if": f"eth{i % 4}", "rx": i * 7919, "tx": i * 104729, "up": True} for i in range(40)]
).encode()
TEXT = 1 | 2

inflate = {
    # A JSON status message, in frames of 125 bytes, read through rooms of 2041 bytes.
    "json_text": seed(deflate(status), flags=TEXT),
    # The same through a 9-byte room, 1-byte arrivals, frames of 1, 7 and 60 bytes, pings.
    "json_small_rooms": seed(deflate(status), room8=1, flags=TEXT | 0x40, sizes=(1, 7, 60)),
    # A bomb: 1 MiB of zeros, far over a 4,080-byte limit (1009).
    "bomb": seed(deflate(bytes(1 << 20), level=9)),
    # Two messages: UTF-8 text with multi-byte characters, then binary.
    "two_messages": seed(
        deflate("héllo wörld, ☃ ✓ 𝄞 ".encode() * 20),
        deflate(bytes(range(256)) * 2, level=1),
        flags=1,
        sizes=(3, 200),
    ),
    # Stored blocks (level 0), and a stream whose final block ends it (BFINAL).
    "stored": seed(deflate(status[:600], level=0), flags=TEXT),
    "final_block": seed(deflate(status[:900], finish=True), flags=TEXT, sizes=(0, 50)),
    # Huffman only, fixed blocks of a short message, and an empty message.
    "huffman_only": seed(deflate(status, strategy=zlib.Z_HUFFMAN_ONLY), flags=TEXT),
    "short": seed(deflate(b"ping"), deflate(b""), flags=TEXT),
    # Text that is not UTF-8 once inflated (1007), and data after a final block (1007).
    "bad_utf8": seed(deflate(b"ok \xff not utf-8"), flags=TEXT),
    "after_final": seed(deflate(b"abc", finish=True) + b"\x41\x42"),
    # Round trip through two connections sharing the compressors, pieces of packets, a
    # narrow client window (9 bits) and partial drains.
    "round_trip_two": seed(status[:1500], status[1500:3000], flags=0x80, ctx=1, rt=0x08 | 0x11 | 0x80),
    "round_trip_packets": seed(status[:3000], b"", ctx=2, rt=0x40 | 0x27, sizes=(200, 255)),
}
for name, data in inflate.items():
    write("inflate", name, data)
