"""The plain records a scenario's child sends to the parent.

Only these cross the process boundary (pickled over a pipe), so rendering and
checking happen in the parent and a child can be killed at any moment without
losing what it had already observed. The parent adds one record of its own at
the end, ``Exited``: how the child's process ended.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._states import SocketRow
from ._vocab import Endpoint


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The socket table at one labelled moment."""

    label: str
    time_ns: int
    rows: tuple[SocketRow, ...]
    #: ``TCP_INFO`` of each of the scenario's open TCP sockets then: (inode, ``_counters.TcpInfo``)
    info: tuple[tuple[int, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class SocketRef:
    """The socket a call was made on, as it was just before the call."""

    local: Endpoint | None = None  #: None for a Unix socket or one not bound yet
    peer: Endpoint | None = None
    listening: bool = False
    inode: int = 0  #: matches ``SocketRow.inode``


@dataclasses.dataclass(frozen=True)
class Call:
    """A labelled call and what it returned, or the errno it raised."""

    label: str  #: what the scenario called it: "send #1"
    start_ns: int
    time_ns: int  #: when it returned (or raised)
    value: Any  #: the value it returned (None when it raised; see ``kept``)
    returned: str | None  #: repr of the return value, shortened for tables; None when it raised
    errno: str | None  #: e.g. "EPIPE", None when it returned
    socket: SocketRef = SocketRef()  #: the socket it was made on (empty for other calls)
    by: str | None = None  #: who made it, when the scenario said (``lab.call(..., by="client")``)
    kept: bool = True  #: False when the value was too large or not picklable (``returned`` holds its repr)
    #: The exception it raised, named as a traceback names it ("BrokenPipeError",
    #: "http.client.RemoteDisconnected"); None when it returned
    exception: str | None = None
    #: The exception's message as a traceback prints it ("[Errno 32] Broken pipe",
    #: "Remote end closed connection without response"); None when it returned
    message: str | None = None

    @property
    def failed(self) -> bool:
        """True when the call raised (an errno, or an exception without one)."""
        return self.errno is not None or self.exception is not None

    @property
    def error(self) -> str | None:
        """What a claim names a failure by: the errno name, else the exception's name; None when it returned."""
        return self.errno if self.errno is not None else self.exception

    @property
    def outcome(self) -> str:
        """What a page prints: the return value's repr, or the errno name (the exception's
        name when it carries no errno)."""
        error = self.error
        return error if error is not None else str(self.returned)


@dataclasses.dataclass(frozen=True)
class Calling:
    """Sent just before a recorded call, so a death inside it is attributed."""

    label: str


@dataclasses.dataclass(frozen=True)
class Value:
    """``lab.record(name, value)``: a value the scenario measured, for claims and pages."""

    name: str
    time_ns: int
    value: Any


@dataclasses.dataclass(frozen=True)
class Named:
    """``lab.name(sock, name)``: a socket's own name in tables and claims."""

    name: str
    inode: int
    local: Endpoint | None
    peer: Endpoint | None


@dataclasses.dataclass(frozen=True)
class Note:
    text: str


@dataclasses.dataclass(frozen=True)
class Frames:
    """Captured frames: (kernel time in ns, bytes) pairs."""

    frames: tuple[tuple[int, bytes], ...]


@dataclasses.dataclass(frozen=True)
class LinkFrames:
    """A two-hosts run's link: every frame with its fate (``_wire.LinkFrame``), and what the
    topology set (``TwoHosts.settings()``: delay, addresses, sysctls per host)."""

    frames: tuple[Any, ...]
    settings: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Started:
    """First record of every run: where and how it ran."""

    kernel: str
    mode: str
    capture: bool
    reason: str
    fix: str
    time_ns: int


@dataclasses.dataclass(frozen=True)
class Failed:
    """The scenario raised; the child's traceback, as text."""

    kind: str
    message: str
    traceback: str


@dataclasses.dataclass(frozen=True)
class Finished:
    time_ns: int


@dataclasses.dataclass(frozen=True)
class KernelEvents:
    """Added by the parent (as root): the kernel's own events of the run's namespace.

    `events` are ``_kevents`` records in the order the kernel wrote them;
    `unavailable` says why there are none ("" when they were recorded), `fix` what
    to do; `missing` names parts this kernel cannot give (a field, a tracepoint).
    """

    events: tuple[Any, ...] = ()
    unavailable: str = ""
    fix: str = ""
    missing: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Counters:
    """The namespace's TCP counters that changed during the scenario (``nstat`` names)."""

    changed: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class Ports:
    """The ports a scenario used: the page's port -> this run's (host mode), and those it bound."""

    mapped: tuple[tuple[int, int], ...]
    bound: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Exited:
    """Added by the parent: how the scenario's process ended."""

    signal: str | None  #: "SIGPIPE" when a signal killed it
    code: int | None  #: its exit status otherwise
    timed_out: bool = False
