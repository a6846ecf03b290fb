"""The words every module shares: TCP states and socket endpoints, as types.

Theory of operation
-------------------
A state is spelled three ways by the three authorities a page quotes:

=============  ===============  ================  =================
``State``      kernel           ``ss``            RFC 9293
=============  ===============  ================  =================
ESTABLISHED    TCP_ESTABLISHED  ESTAB             ESTABLISHED
FIN_WAIT2      TCP_FIN_WAIT2    FIN-WAIT-2        FIN-WAIT-2
CLOSE          TCP_CLOSE        UNCONN            CLOSED
NEW_SYN_RECV   TCP_NEW_SYN_RECV SYN-RECV          SYN-RECEIVED
=============  ===============  ================  =================

The members are the kernel's states (``include/net/tcp_states.h``), with the
kernel's numbers, so a value read from sock_diag or a tracepoint becomes a
member by number. Each member knows its three spellings, and every view picks
one by a single rule (the "Reading the output" page states it):

* a **table** (socket tables, the notes under them, the site's matrix and
  errno table) copies ``ss``, so it spells states as ``ss`` prints them;
* a **picture** (ladders, the state diagram) draws RFC 9293's state machine,
  so it spells them as RFC 9293 does;
* the kernel's own names (``TCP_FIN_WAIT2``) appear only where the kernel is
  quoted.

Code may name a state in any of the three spellings (``State.parse``), so a
scenario can write ``lab.wait_state(sock, "FIN-WAIT-2")`` or ``"FIN_WAIT2"``.

An endpoint is a value (family, address, port), formatted in one place:
``127.0.0.1:4321``, ``[::1]:4321``, ``0.0.0.0:*`` (a listener's wildcard
peer). A Unix stream socket has no port; ``ss`` prints its inode where a port
would be (``/tmp/sock 41233``, or ``* 41234`` for an unnamed peer), and so do we.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import socket


def short_repr(value: object, width: int = 60) -> str:
    """A value's repr for a table cell: cut to `width` characters with "..."."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


class State(enum.Enum):
    """A TCP socket state (the kernel's numbering), with its three spellings."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12

    @property
    def kernel(self) -> str:
        """The kernel's name, as its tracepoints print it: ``TCP_FIN_WAIT2``."""
        return f"TCP_{self.name}"

    @property
    def ss(self) -> str:
        """What ``ss`` prints: ``FIN-WAIT-2``, ``ESTAB``, ``UNCONN``."""
        return _SS[self]

    @property
    def rfc(self) -> str:
        """RFC 9293's name: ``FIN-WAIT-2``, ``ESTABLISHED``, ``CLOSED``, ``SYN-RECEIVED``."""
        return _RFC[self]

    @property
    def machine(self) -> State:
        """The state of RFC 9293's machine this is: a request socket (``NEW_SYN_RECV``)
        stands for ``SYN_RECV``; every other state is itself."""
        return State.SYN_RECV if self is State.NEW_SYN_RECV else self

    def __str__(self) -> str:
        return self.rfc

    @classmethod
    def parse(cls, name: str | State) -> State:
        """The state named in any spelling: ``FIN_WAIT2``, ``TCP_FIN_WAIT2``, ``FIN-WAIT-2``,
        ``ESTAB``, ``CLOSED``; ValueError listing the states otherwise."""
        if isinstance(name, State):
            return name
        key = str(name).strip().upper()
        found = _BY_SPELLING.get(key) or _BY_SPELLING.get(key.removeprefix("TCP_"))
        if found is None:
            known = ", ".join(s.rfc for s in cls)
            raise ValueError(f"unknown TCP state {name!r}; the states are {known} (kernel and ss "
                             "spellings such as FIN_WAIT2 and ESTAB are accepted too)")
        return found


_SS = {
    State.ESTABLISHED: "ESTAB", State.SYN_SENT: "SYN-SENT", State.SYN_RECV: "SYN-RECV",
    State.FIN_WAIT1: "FIN-WAIT-1", State.FIN_WAIT2: "FIN-WAIT-2", State.TIME_WAIT: "TIME-WAIT",
    State.CLOSE: "UNCONN", State.CLOSE_WAIT: "CLOSE-WAIT", State.LAST_ACK: "LAST-ACK",
    State.LISTEN: "LISTEN", State.CLOSING: "CLOSING", State.NEW_SYN_RECV: "SYN-RECV",
}
_RFC = {
    State.ESTABLISHED: "ESTABLISHED", State.SYN_SENT: "SYN-SENT", State.SYN_RECV: "SYN-RECEIVED",
    State.FIN_WAIT1: "FIN-WAIT-1", State.FIN_WAIT2: "FIN-WAIT-2", State.TIME_WAIT: "TIME-WAIT",
    State.CLOSE: "CLOSED", State.CLOSE_WAIT: "CLOSE-WAIT", State.LAST_ACK: "LAST-ACK",
    State.LISTEN: "LISTEN", State.CLOSING: "CLOSING", State.NEW_SYN_RECV: "SYN-RECEIVED",
}
_BY_SPELLING: dict[str, State] = {}
for _state in State:  # the kernel's name wins over another state's ss or RFC spelling
    _BY_SPELLING[_state.name] = _state
for _state in State:
    for _spelling in (_state.ss, _state.rfc, _state.rfc.replace("-", "_")):
        _BY_SPELLING.setdefault(_spelling, _state if _state is not State.NEW_SYN_RECV else State.SYN_RECV)
_BY_SPELLING.update({"FIN_WAIT_1": State.FIN_WAIT1, "FIN_WAIT_2": State.FIN_WAIT2, "SYN-RCVD": State.SYN_RECV,
                     "FINWAIT-2": State.FIN_WAIT2})
del _state, _spelling


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One end of a socket: family, address and port.

    ``port`` is ``None`` for a wildcard (a listener's peer). For a Unix socket
    ``address`` is its path (``@name`` for an abstract one, ``*`` for none) and
    ``port`` its inode, as ``ss`` prints them.
    """

    family: int
    address: str
    port: int | None

    def sort_key(self) -> tuple:
        """Order for stable tables: family, address, port (a wildcard first)."""
        return (self.family, self.address, -1 if self.port is None else self.port)

    def __str__(self) -> str:
        port = "*" if self.port is None else str(self.port)
        if self.family == socket.AF_UNIX:  # ss: "path inode", or "*" for no peer at all
            return self.address if self.port is None else f"{self.address} {port}"
        if self.family == socket.AF_INET6:
            return f"[{self.address}]:{port}"
        return f"{self.address}:{port}"

    @property
    def inet(self) -> bool:
        """An IPv4 or IPv6 endpoint (not a Unix socket)."""
        return self.family in (socket.AF_INET, socket.AF_INET6)

    @classmethod
    def of(cls, address: tuple | str, port: int | None = None) -> Endpoint:
        """An endpoint from what Python's socket calls use: ``("127.0.0.1", 4321)``,
        ``("::1", 4321, 0, 0)``, or an address string and a port."""
        if isinstance(address, tuple):
            address, port = str(address[0]), int(address[1])
        ip = ipaddress.ip_address(str(address).strip("[]"))
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        # Spelled as the kernel's addresses are everywhere else (inet_ntop), so that
        # ::ffff:127.0.0.1 from a string equals the same address read from a socket.
        return cls(family, socket.inet_ntop(family, ip.packed), port)

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """The endpoint printed as ``127.0.0.1:4321``, ``[::1]:4321`` or ``0.0.0.0:*``."""
        host, sep, port = text.strip().rpartition(":")
        if not sep:
            raise ValueError(f"not an address:port: {text!r}")
        number = None if port == "*" else int(port)
        return cls.of(host, number)

    @classmethod
    def of_socket(cls, sock: socket.socket, peer: bool = False) -> Endpoint | None:
        """The socket's own (or its peer's) endpoint; None when it has none (not connected,
        closed, or not an IP socket)."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        try:
            addr = sock.getpeername() if peer else sock.getsockname()
        except OSError:
            return None
        return cls(sock.family, addr[0], addr[1])
