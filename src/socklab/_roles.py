"""Who is who in a run: sockets, packet endpoints and calls named by their role.

Theory of operation
-------------------
Pages and claims say "the client" instead of an address. The rules:

* a socket in LISTEN is the *listener*;
* a *server port* is a port that listened (in a snapshot, or a call was made on
  the listening socket), or that received a SYN;
* a connected socket on a server port is the *server*; one whose peer is on a
  server port is the *client*; anything else is a *socket*;
* ``lab.name(sock, "...")`` overrides all of this (and is the only naming for
  Unix sockets, which are otherwise ``unix <inode>``).

A call is made *by* what the scenario said (``lab.call(..., by="client")``),
else by the role of the socket it was made on; a call on no socket (a pipe, a
``signal()``) is made by nobody, and its key is its label alone. A call's key
is what claims and ``Run.call`` name it by: ``"server: send #1"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._observed import Observed
from ._records import Call
from ._states import SocketRow
from ._vocab import Endpoint, State


def server_ports(run: Observed) -> set[int]:
    """Ports that listened, or received a SYN."""
    return run.server_ports


def _named(run: Observed, inode: int, local: Endpoint | None, peer: Endpoint | None) -> str | None:
    for named in run.names:
        if (named.inode and named.inode == inode) or (
                named.local is not None and (named.local, named.peer) == (local, peer)):
            return named.name
    return None


def role(run: Observed, row: SocketRow) -> str:
    """The name of a socket in tables and claims (see the module doc)."""
    named = _named(run, row.inode, row.local, row.peer)
    if named:
        return named
    if row.netid != "tcp":
        return f"unix {row.inode}"
    if row.state is State.LISTEN:
        return "listener"
    servers = server_ports(run)
    if row.local_port in servers:
        return "server"
    if row.peer_port in servers:
        return "client"
    return "socket"


def endpoint_role(run: Observed, end: Endpoint) -> str:
    """Role of a packet endpoint: its ``lab.name``, else "server" on a server port, else "client"."""
    for named in run.names:
        if named.local == end:
            return named.name
    return "server" if end.port in server_ports(run) else "client"


def roles(run: Observed, rows: Sequence[SocketRow]) -> list[str]:
    """The roles of a table's rows, told apart where several share one: by the port that
    differs (a client's own, a server's peer's)."""
    names = [role(run, r) for r in rows]
    return [f"{n}:{r.peer_port if n == 'server' else r.local_port}"
            if names.count(n) > 1 and r.state is not State.LISTEN else n
            for n, r in zip(names, rows, strict=True)]


def table(run: Observed, label: str) -> dict[str, SocketRow]:
    """{role: row} of the snapshot `label`, roles told apart as in its table."""
    rows = run.snapshot(label).rows
    return dict(zip(roles(run, rows), rows, strict=True))


def actor(run: Observed, call: Call) -> str | None:
    """Who made `call`: what the scenario said, else its socket's role; None for no socket."""
    if call.by:
        return call.by
    ref = call.socket
    named = _named(run, ref.inode, ref.local, ref.peer) if ref.inode else None
    if named:
        return named
    if ref.listening:
        return "listener"
    if ref.local is None:
        return None
    return endpoint_role(run, ref.local)


def call_key(run: Observed, call: Call) -> str:
    """The name claims use for a call: ``"server: send #1"``, or the label alone."""
    who = actor(run, call)
    return f"{who}: {call.label}" if who else call.label


def find_call(run: Observed, key: str) -> Call:
    """The call named `key` (``"server: send #1"``), or by its label when only one call has it."""
    matches = [c for c in run.calls if call_key(run, c) == key]
    if not matches:
        matches = [c for c in run.calls if c.label == key]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(repr(call_key(run, c)) for c in run.calls) or "none"
    what = "several calls are" if matches else "no call is"
    raise KeyError(f"{what} named {key!r} in run {run.name!r}; calls: {known}")


def flow(run: Observed) -> list[str]:
    """The packets as ``"client [S]"``: who sent which flags, in order."""
    return [f"{endpoint_role(run, p.source)} [{p.flags}]" for p in run.packets]
