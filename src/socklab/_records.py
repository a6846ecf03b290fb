"""The plain records a scenario's child sends to the parent.

Only these cross the process boundary (pickled over a pipe), so rendering and
checking happen in the parent and a child can be killed at any moment without
losing what it had already observed.
"""

from __future__ import annotations

import dataclasses

from ._states import SocketRow


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The socket table at one labelled moment."""

    label: str
    time_ns: int
    rows: tuple[SocketRow, ...]


@dataclasses.dataclass(frozen=True)
class Call:
    """A labelled call and what it returned, or the errno it raised."""

    label: str
    time_ns: int
    returned: str | None  #: repr of the return value, None when it raised
    errno: str | None  #: e.g. "EPIPE", None when it returned
    local: str = ""  #: the socket's own address before the call ("" if not a socket)
    peer: str = ""
    listening: bool = False  #: the socket was a listener
    inode: int = 0  #: the socket's inode (matches SocketRow.inode), 0 if not a socket

    @property
    def outcome(self) -> str:
        """What a page prints: the return value, or the errno name."""
        return self.errno if self.errno is not None else str(self.returned)


@dataclasses.dataclass(frozen=True)
class Calling:
    """Sent just before a recorded call, so a death inside it is attributed."""

    label: str


@dataclasses.dataclass(frozen=True)
class Named:
    """``lab.name(sock, name)``: a socket's own name in tables and claims."""

    name: str
    inode: int
    local: str
    peer: str


@dataclasses.dataclass(frozen=True)
class Note:
    text: str


@dataclasses.dataclass(frozen=True)
class Frames:
    """Captured frames: (kernel time in ns, bytes) pairs."""

    frames: tuple[tuple[int, bytes], ...]


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
