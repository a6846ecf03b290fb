"""Socket state snapshots with ``ss`` semantics, from sock_diag netlink.

Theory of operation
-------------------
``ss`` asks the kernel through NETLINK_SOCK_DIAG; so do we, with the same
request structures (``linux/inet_diag.h``, ``linux/unix_diag.h``), so every
column means what it means in ``ss``:

* TCP: ``idiag_rqueue``/``idiag_wqueue``. For an ESTABLISHED-like socket they
  are ``rcv_nxt - copied_seq`` and ``write_seq - snd_una``: bytes (and a FIN,
  which takes a sequence number) received but not read, and written by the
  program but not acknowledged, whether sent or not. That is why the seed's CLOSE_WAIT socket shows Recv-Q 1. For a
  LISTEN socket they are the accept queue and the backlog.
* Unix stream: ``UNIX_DIAG_RQLEN``: bytes queued to read and to be read by the
  peer (for LISTEN: pending connections and backlog).
* The timer column is ``idiag_timer``/``idiag_expires`` printed like ``ss -o``.

A dump shows only the sockets of the caller's network namespace, which is what
makes a run isolated. Where netlink is unavailable, ``/proc/net/tcp`` is read
instead (no backlog for LISTEN, which the table then says).
"""

from __future__ import annotations

import dataclasses
import socket
import struct

from ._vocab import Endpoint, State

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

TIMERS = {0: "", 1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}


@dataclasses.dataclass(frozen=True)
class SocketRow:
    """One socket as ``ss`` shows it."""

    netid: str  #: "tcp" or "u_str"
    state: State
    recv_q: int
    send_q: int
    local: Endpoint
    peer: Endpoint
    timer: str = ""  #: like ss -o: "timewait,60sec,0" ("" when none)
    inode: int = 0
    timer_ms: int | None = None  #: milliseconds left on the timer (None when there is no timer)
    host: str = ""  #: the host it lives on, in a two-host run ("" otherwise)

    @property
    def local_port(self) -> int | None:
        return self.local.port if self.local.inet else None

    @property
    def peer_port(self) -> int | None:
        return self.peer.port if self.peer.inet else None

    @property
    def timer_kind(self) -> str:
        """The timer's kind alone: "timewait", "on", "keepalive", "persist" or ""."""
        return self.timer.partition(",")[0]


def table_order(row: SocketRow) -> tuple:
    """A row's place in a table, the same in every run (the kernel's dump follows its hash
    buckets, which differ between runs): TCP before Unix, listeners first, then by port."""
    return (row.netid != "tcp", row.state is not State.LISTEN, row.local_port or 0, row.peer_port or 0,
            row.local.sort_key(), row.peer.sort_key(), row.state.value, row.inode)


def format_timer(kind: int, expires_ms: int, retrans: int = 0) -> str:
    """Format a timer like ``ss -o`` (``timewait,60sec,0``), in one unit per range.

    From a second up, whole seconds rounded up (``ss`` would print ``1min`` or
    ``59sec`` for the same 60-second timer, by a millisecond): a timer counts down
    from its set value, so a table taken within a second of it shows that value.
    """
    name = TIMERS.get(kind, f"timer{kind}")
    if not name:
        return ""
    left = f"{-(-expires_ms // 1000)}sec" if expires_ms >= 1000 else f"{expires_ms}ms"
    return f"{name},{left},{retrans}"


def endpoint(family: int, raw: bytes, port: int | None) -> Endpoint:
    """An endpoint from the raw address bytes the kernel reports."""
    size = 4 if family == socket.AF_INET else 16
    return Endpoint(family, socket.inet_ntop(family, raw[:size]), port)


# struct inet_diag_msg: family, state, timer, retrans, sockid(sport, dport, src[16],
# dst[16], if, cookie[2]), expires, rqueue, wqueue, uid, inode
_INET_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # ports are big-endian


_KNOWN_STATES = {s.value for s in State}


def parse_inet_diag_msg(payload: bytes) -> SocketRow | None:
    """Turn one ``inet_diag_msg`` into a row (fixed-input testable); None for a state
    this version does not know (a newer kernel's), which a table leaves out."""
    (family, state, timer, retrans, sport, dport, src, dst, _if, _cookie,
     expires, rqueue, wqueue, _uid, inode) = _INET_DIAG_MSG.unpack_from(payload)
    sport, dport = int.from_bytes(sport, "big"), int.from_bytes(dport, "big")
    if state not in _KNOWN_STATES:
        return None
    local = endpoint(family, src, sport)
    listening = state == State.LISTEN.value  # ss prints the wildcard peer
    peer = endpoint(family, bytes(16), None) if listening else endpoint(family, dst, dport)
    return SocketRow("tcp", State(state), rqueue, wqueue, local, peer, format_timer(timer, expires, retrans), inode,
                     expires if timer else None)


# struct unix_diag_msg: family, type, state, pad, ino, cookie[2]
_UNIX_DIAG_MSG = struct.Struct("=BBBBI8s")
UNIX_DIAG_NAME, UNIX_DIAG_PEER, UNIX_DIAG_RQLEN = 0, 2, 4


def _attributes(payload: bytes, offset: int):
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        if length < 4:
            break
        yield kind, payload[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def parse_unix_diag_msg(payload: bytes) -> SocketRow | None:
    """Turn one ``unix_diag_msg`` (with NAME, PEER, RQLEN attributes) into a row."""
    _family, kind, state, _pad, inode, _cookie = _UNIX_DIAG_MSG.unpack_from(payload)
    if kind != socket.SOCK_STREAM:
        return None
    name, peer_inode, rq, wq = "", 0, 0, 0
    for attr, value in _attributes(payload, _UNIX_DIAG_MSG.size):
        if attr == UNIX_DIAG_NAME:
            name = value.rstrip(b"\0").decode(errors="replace") or ""
            if value[:1] == b"\0":
                name = "@" + value[1:].decode(errors="replace")
        elif attr == UNIX_DIAG_PEER:
            peer_inode = struct.unpack("=I", value[:4])[0]
        elif attr == UNIX_DIAG_RQLEN:
            rq, wq = struct.unpack("=II", value[:8])
    if state not in _KNOWN_STATES:
        return None
    local = Endpoint(socket.AF_UNIX, name or "*", inode)
    peer = Endpoint(socket.AF_UNIX, "*", peer_inode or None)
    return SocketRow("u_str", State(state), rq, wq, local, peer, "", inode)


def _dump(request: bytes) -> list[bytes]:
    """Send one sock_diag dump request; return the payload of every answer."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY,
                             NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        nl.sendto(header + request, (0, 0))
        out: list[bytes] = []
        while True:
            data = nl.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, offset + 16)[0]
                    raise OSError(err, f"sock_diag refused the dump (errno {err})")
                out.append(data[offset + 16 : offset + length])
                offset += (length + 3) & ~3


def tcp_rows() -> list[SocketRow]:
    """Every TCP socket of this network namespace, IPv4 then IPv6."""
    rows = []
    for family in (socket.AF_INET, socket.AF_INET6):
        # struct inet_diag_req_v2: family, protocol, ext, pad, states, sockid (zeros)
        request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + bytes(48)
        rows += [row for p in _dump(request) if (row := parse_inet_diag_msg(p)) is not None]
    return rows


def unix_stream_rows() -> list[SocketRow]:
    """Every Unix stream socket of this network namespace."""
    # struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
    show = (1 << 0) | (1 << 2) | (1 << 4)  # UDIAG_SHOW_NAME | _PEER | _RQLEN
    request = struct.pack("=BBHIII8s", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, show, bytes(8))
    return [row for p in _dump(request) if (row := parse_unix_diag_msg(p)) is not None]


def parse_proc_net_tcp(text: str, family: int = socket.AF_INET) -> list[SocketRow]:
    """Fallback: rows from /proc/net/tcp or /proc/net/tcp6 text (no LISTEN backlog)."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, peer, state = fields[1], fields[2], int(fields[3], 16)
        if state not in _KNOWN_STATES:
            continue
        tx, rx = (int(x, 16) for x in fields[4].split(":"))
        timer_kind, expires = fields[5].split(":")
        peer_end = _proc_address(peer, family)
        if state == State.LISTEN.value:
            peer_end = dataclasses.replace(peer_end, port=None)
        rows.append(SocketRow(
            "tcp", State(state), rx, tx, _proc_address(local, family), peer_end,
            format_timer(int(timer_kind, 16), int(expires, 16) * 10),  # jiffies at HZ=100 approx
            int(fields[9]),
            int(expires, 16) * 10 if int(timer_kind, 16) else None,
        ))
    return rows


def _proc_address(field: str, family: int) -> Endpoint:
    addr, port = field.split(":")
    raw = bytes.fromhex(addr)
    # /proc prints each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return endpoint(family, raw, int(port, 16))


def snapshot(unix: bool = True) -> list[SocketRow]:
    """All TCP (and Unix stream) sockets visible here; netlink, else /proc."""
    try:
        rows = tcp_rows()
    except OSError:
        rows = []
        for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
            with open(path) as f:
                rows += parse_proc_net_tcp(f.read(), family)
    if unix:
        try:
            rows += unix_stream_rows()
        except OSError:
            pass
    return rows
