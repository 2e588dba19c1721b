"""The gateway's idle memory against its configuration: every buffer is reserved at start-up
(4 per connection slot, `--buffer-size` each; slots are `maxclients` plus an eighth of it for
the 503 answers, 2 to 64), but a buffer costs RSS only once a connection has written into it.
The connection table is the same: room for every slot is allocated at start-up, a slot is
written when first needed. So two idle gateways that differ only in `-c` differ by their
reservation in address space, and in resident memory only by the buffers' free list."""

from __future__ import annotations

import time

from harness import proc_kb, ws_connect

BUF_KIB = 16  # the default --buffer-size
BUFFERS_PER_SLOT = 4
# What a slot may cost resident, idle: its buffers' four free-list entries (16 bytes each on
# x86_64) and change. Its table entry written at start would be 0.85 KiB more, one page of its
# 64 KiB of buffers touched 4 KiB more.
SLOT_KIB = 0.25


def slots(maxclients: int) -> int:
    return maxclients + min(max(maxclients // 8, 2), 64)


def status_kb(pid: int) -> dict[str, int]:
    """/proc/PID/status's kB fields (VmSize, VmRSS, RssAnon, ...)."""
    return proc_kb(pid, "status")


def idle_after_one_echo(g) -> dict[str, int]:
    """The gateway's figures once one echo went through it and its connection closed: the
    relay's code and one buffer set have been used, as on a gateway that has served."""
    with ws_connect(g.url()) as c:
        c.send(b"x" * 1000)
        assert c.recv(timeout=5) == b"x" * 1000
    time.sleep(0.3)
    return status_kb(g.pid)


def test_idle_buffers_are_reserved_not_resident(echo_backend, gateway):
    echo_backend("framed")
    small, large = 8, 1000
    few = idle_after_one_echo(gateway(m="framed", c=small))
    many = idle_after_one_echo(gateway(m="framed", c=large))
    extra_slots = slots(large) - slots(small)
    reserved_kb = extra_slots * BUFFERS_PER_SLOT * BUF_KIB
    figures = {"slots": (slots(small), slots(large)), "reserved_kb": reserved_kb,
               "VmSize": (few["VmSize"], many["VmSize"]), "RssAnon": (few["RssAnon"], many["RssAnon"])}
    print(figures)
    # The buffers are there from the start (nothing is mapped later)...
    assert many["VmSize"] - few["VmSize"] >= reserved_kb, figures
    # ...and cost nothing resident until used. (Anonymous memory: the binary's own pages, mapped
    # from the file a few at a time, vary by a hundred kB from one start to the next.)
    assert many["RssAnon"] - few["RssAnon"] <= extra_slots * SLOT_KIB, figures
