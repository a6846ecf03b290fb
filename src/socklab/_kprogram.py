"""The BPF program of each tracepoint: keep the watched namespace's events, copy them to the ring buffer.

Theory of operation
-------------------
One program per tracepoint, assembled here with ``_bpf.Asm`` (no compiler), run
by the kernel for every hit of the tracepoint on every CPU:

1. cheap rejections first: not TCP (``inet_sock_set_state``), not IP
   (``kfree_skb``), or nothing watched (the first slot is 0);
2. find the namespace: the event's socket ``sk->__sk_common.skc_net.net``, or
   when the event has no socket, the packet's device ``skb->dev->nd_net.net``
   (then the ``rx_sk`` of a drop), read with ``bpf_probe_read_kernel`` at
   offsets from the kernel's BTF; compare ``net->ns.inum`` with the watched
   inode of each slot in turn, unrolled, up to the first empty slot;
3. count the match, reserve a ring buffer record, stamp it with
   ``bpf_ktime_get_ns()`` (CLOCK_MONOTONIC), the kind, the matching slot's
   number and generation,
   copy the tracepoint's record (from byte 8: the first 8 bytes are not readable
   by a program), the socket's state byte and, for a drop, the packet's first
   bytes from its network header; submit without waking anyone
   (``BPF_RB_NO_WAKEUP``: the reader does not sleep on the buffer);
4. return 1: the verdict of a tracepoint program decides for every perf user of
   the tracepoint, and we must not hide events from them.

The watch map is one array element of :data:`SLOTS` u64 slots, each ``inode |
generation << 32`` or 0, filled from slot 0 (the run's own namespace) on, and
written whole by one ``bpf(2)`` call. A program may read it while it is being
rewritten and see some slots old and some new; every slot carries its own
generation, so such a record is either right or dropped by the reader as
stale. The not-watching exit reads slot 0 only: it costs what it cost when
the map held one namespace.

The record layout is ``_kevents``'s (``REC_HEAD``, ``PAYLOAD``, ``HEADER_BYTES``).
"""

from __future__ import annotations

import dataclasses
import socket

from . import _bpf
from ._bpf import R0, R1, R2, R3, R4, R6, R7, R8, R9, R10
from ._kevents import HEADER_BYTES, PAYLOAD

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
#: Namespaces one watch can hold: the run's own (slot 0) and up to three hosts.
SLOTS = 4


# -- the programs ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Offsets:
    sk_net: int  # sock -> struct net *
    sk_state: int
    net_inum: int
    skb_dev: int
    skb_head: int
    skb_network_header: int
    dev_net: int
    dev_ifindex: int

    @classmethod
    def from_btf(cls, btf: _bpf.BTF) -> Offsets:
        return cls(btf.offset("sock.__sk_common.skc_net.net"), btf.offset("sock.__sk_common.skc_state"),
                   btf.offset("net.ns.inum"), btf.offset("sk_buff.dev"), btf.offset("sk_buff.head"),
                   btf.offset("sk_buff.network_header"), btf.offset("net_device.nd_net.net"),
                   btf.offset("net_device.ifindex"))


def _read(asm: _bpf.Asm, stack: int, size: int, src_reg: int, src_off: int) -> None:
    """bpf_probe_read_kernel(r10+stack, size, src_reg+src_off); jump to "out" on failure."""
    asm.mov(R3, src_reg)
    if src_reg != R3 or src_off:
        asm.addi(R3, src_off)
    asm.mov(R1, R10)
    asm.addi(R1, stack)
    asm.movi(R2, size)
    asm.call(_bpf.PROBE_READ_KERNEL)
    asm.jnei(R0, 0, "out")


def build_program(tp: _bpf.Tracepoint, kind: int, off: Offsets, watch_fd: int, ring_fd: int,
                  stats_fd: int) -> bytes:
    """The filter-and-copy program of one tracepoint (see the module docstring).

    Registers: r6 ctx, r7 a watched slot (inode | generation << 32), then the matching one, r8 the socket
    or 0, r9 the record.
    Stack: -8 map key, -16 scratch, -24 ifindex, -32 the skb (drops only), -40 the stats map value,
    -48 the watch map's slots, -56 the number of the matching slot.
    Stats (one array element, two u64): events that matched the namespace, and those the ring buffer refused.
    """
    f = tp.fields
    asm = _bpf.Asm()
    asm.mov(R6, R1)
    if "protocol" in f and tp.name == "inet_sock_set_state":  # TCP only (not SCTP, MPTCP's subflow master)
        asm.ldx(2, R1, R6, f["protocol"].offset)
        asm.jnei(R1, socket.IPPROTO_TCP, "out")
    if tp.name == "kfree_skb":  # IP packets only; protocol is the host-order ethertype
        asm.ldx(2, R1, R6, f["protocol"].offset)
        asm.jeqi(R1, ETH_P_IP, "ip")
        asm.jnei(R1, ETH_P_IPV6, "out")
        asm.label("ip")
    asm.st(4, R10, -8, 0)
    asm.ld_map_fd(R1, watch_fd)
    asm.mov(R2, R10)
    asm.addi(R2, -8)
    asm.call(_bpf.MAP_LOOKUP_ELEM)
    asm.jeqi(R0, 0, "out")
    asm.ldx(8, R7, R0, 0)
    asm.jeqi(R7, 0, "out")  # not watching: the common case, two map instructions and out
    asm.stx(8, R10, -48, R0)
    asm.movi(R8, 0)
    asm.st(4, R10, -24, 0)
    asm.st(8, R10, -32, 0)
    # Where the namespace comes from, in order: the socket, the packet's device, the receiving socket.
    sources = [("sk", "skaddr"), ("skb", "skbaddr"), ("sk", "rx_sk")]
    if tp.name == "kfree_skb":
        sources = [("skb", "skbaddr"), ("sk", "rx_sk")]
    sources = [(what, name) for what, name in sources if name in f]
    for i, (what, name) in enumerate(sources):
        asm.label(f"src{i}")
        nxt = f"src{i + 1}" if i + 1 < len(sources) else "out"
        asm.ldx(8, R3, R6, f[name].offset)
        asm.jeqi(R3, 0, nxt)
        if what == "sk":
            asm.mov(R8, R3)
            _read(asm, -16, 8, R3, off.sk_net)
        else:
            asm.stx(8, R10, -32, R3)
            _read(asm, -16, 8, R3, off.skb_dev)
            asm.ldx(8, R3, R10, -16)
            asm.jeqi(R3, 0, nxt)
            asm.stx(8, R10, -16, R3)
            _read(asm, -24, 4, R3, off.dev_ifindex)
            asm.ldx(8, R3, R10, -16)
            _read(asm, -16, 8, R3, off.dev_net)
        asm.ja("have_net")
    asm.label("have_net")
    asm.ldx(8, R3, R10, -16)
    asm.jeqi(R3, 0, "out")
    _read(asm, -16, 4, R3, off.net_inum)
    asm.ldx(4, R1, R10, -16)
    asm.ldx(8, R4, R10, -48)
    for slot in range(SLOTS):
        if slot:
            asm.ldx(8, R7, R4, 8 * slot)
            asm.jeqi(R7, 0, "out")  # slots are filled in order: the first empty one ends them
        asm.mov(R2, R7)
        asm.lshi(R2, 32)
        asm.rshi(R2, 32)
        asm.jeq(R1, R2, f"slot{slot}")
    asm.ja("out")
    for slot in range(SLOTS):
        asm.label(f"slot{slot}")
        asm.st(8, R10, -56, slot)
        asm.ja("matched")
    asm.label("matched")
    # A match: count it, reserve, fill, submit.
    asm.st(4, R10, -8, 0)
    asm.ld_map_fd(R1, stats_fd)
    asm.mov(R2, R10)
    asm.addi(R2, -8)
    asm.call(_bpf.MAP_LOOKUP_ELEM)
    asm.stx(8, R10, -40, R0)
    asm.jeqi(R0, 0, "reserve")
    asm.movi(R1, 1)
    asm.atomic_add(R0, 0, R1)
    asm.label("reserve")
    words = (tp.size - 8 + 7) // 8
    size = PAYLOAD + 8 * words + (HEADER_BYTES if tp.name == "kfree_skb" else 0)
    asm.ld_map_fd(R1, ring_fd)
    asm.movi(R2, size)
    asm.movi(R3, 0)
    asm.call(_bpf.RINGBUF_RESERVE)
    asm.jnei(R0, 0, "reserved")
    asm.ldx(8, R1, R10, -40)
    asm.jeqi(R1, 0, "out")
    asm.movi(R2, 1)
    asm.atomic_add(R1, 8, R2)
    asm.ja("out")
    asm.label("reserved")
    asm.mov(R9, R0)
    asm.call(_bpf.KTIME_GET_NS)
    asm.stx(8, R9, 0, R0)
    asm.st(4, R9, 8, kind)
    asm.rshi(R7, 32)
    asm.stx(4, R9, 12, R7)
    asm.ldx(4, R1, R10, -24)
    asm.stx(4, R9, 20, R1)
    asm.st(4, R9, 16, 0)
    asm.ldx(1, R1, R10, -56)
    asm.stx(1, R9, 17, R1)
    for i in range(words):
        asm.ldx(8, R1, R6, 8 + 8 * i)
        asm.stx(8, R9, PAYLOAD + 8 * i, R1)
    asm.jeqi(R8, 0, "no_sk")
    asm.mov(R1, R9)
    asm.addi(R1, 16)
    asm.movi(R2, 1)
    asm.mov(R3, R8)
    asm.addi(R3, off.sk_state)
    asm.call(_bpf.PROBE_READ_KERNEL)
    asm.label("no_sk")
    if tp.name == "kfree_skb":  # the packet's first bytes from its network header: head + network_header
        asm.ldx(8, R8, R10, -32)
        asm.jeqi(R8, 0, "submit")
        asm.st(8, R10, -16, 0)
        asm.mov(R1, R10)
        asm.addi(R1, -16)
        asm.movi(R2, 2)
        asm.mov(R3, R8)
        asm.addi(R3, off.skb_network_header)
        asm.call(_bpf.PROBE_READ_KERNEL)
        asm.mov(R1, R10)
        asm.addi(R1, -8)
        asm.movi(R2, 8)
        asm.mov(R3, R8)
        asm.addi(R3, off.skb_head)
        asm.call(_bpf.PROBE_READ_KERNEL)
        asm.ldx(8, R3, R10, -8)
        asm.ldx(2, R1, R10, -16)
        asm.add(R3, R1)
        asm.mov(R1, R9)
        asm.addi(R1, PAYLOAD + 8 * words)
        asm.movi(R2, HEADER_BYTES)
        asm.call(_bpf.PROBE_READ_KERNEL)
    asm.label("submit")
    asm.mov(R1, R9)
    asm.movi(R2, _bpf.BPF_RB_NO_WAKEUP)
    asm.call(_bpf.RINGBUF_SUBMIT)
    asm.label("out")
    asm.movi(R0, 1)  # let every other perf user of this tracepoint see the event (the verdict is shared)
    asm.exit()
    return asm.assemble()


# -- the recorder ------------------------------------------------------------------------------------------
