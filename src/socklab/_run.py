"""Run: what one scenario did, with the views, claims and pictures a page uses.

Theory of operation
-------------------
``Run`` is the run's data (``_observed.Observed``: snapshots, calls, values,
packets, notes) and nothing else of its own: each method hands the data to the
module that does that one job (``_roles``, ``_views``, ``_claims``,
``_ladder``). Those modules import the data type, never ``Run``, so the package
has no import cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _claims, _degraded, _events, _ladder, _roles, _trace, _views
from ._observed import Observed
from ._records import Call
from ._render import Group, Lines, Table
from ._states import SocketRow
from ._tcp import Transition
from ._vocab import State

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Run(Observed):
    """The observed record of one scenario run: its data, and what a page shows of it."""

    def __init__(self, name: str, records: list[object]) -> None:
        super().__init__(name, records)
        #: Claims that this machine could not check (see ``expect`` and ``claim``).
        self.unchecked: list[str] = []
        #: Why the scenario stopped before its end ("" when it ran to its end): this machine
        #: could not do what came next (``Lab.sysctl`` without a private namespace).
        self.stopped: str = _degraded.stopped_at(records)
        if not self.isolation.capture:  # who is who comes from the tables then, also inside ``claim``
            _ = self.server_ports

    # -- who is who --------------------------------------------------------------
    def role(self, row: SocketRow) -> str:
        """The name of a socket in tables and claims: listener, server, client, or its ``lab.name``."""
        return _roles.role(self, row)

    def states_at(self, label: str) -> dict[str, SocketRow]:
        """{role: row} of the snapshot `label`."""
        return _roles.table(self, label)

    def actor(self, call: Call) -> str | None:
        """Who made `call`: what the scenario said (``by=``), else its socket's role; None
        for a call on no socket."""
        return _roles.actor(self, call)

    def tcp_info(self, label: str) -> dict[str, Any]:
        """{role: TCP_INFO} of the scenario's open TCP sockets at the snapshot `label` (the kernel's
        ``struct tcp_info``: retransmits, backoff, probes, unacked, notsent_bytes, rto...)."""
        by_inode = dict(self.snapshot(label).info)
        return {role: by_inode[row.inode] for role, row in _roles.table(self, label).items() if row.inode in by_inode}

    def call(self, key: str) -> Call:
        """The call named `key`: ``"server: send #1"`` (who, then the label), or the label alone
        when only one call has it."""
        return _roles.find_call(self, key)

    def flow(self) -> list[str]:
        """The packets as ``"client [S]"``: who sent which flags, in order."""
        return _roles.flow(self)

    # -- views -------------------------------------------------------------------
    def states(self, *labels: str) -> Group:
        """The socket tables (all snapshots, or those named), ss-like."""
        return _views.states(self, *labels)

    def trace(self) -> Lines:
        """The packets, one tcpdump-style line each; RST and FIN lines emphasised."""
        return _views.trace(self)

    def results(self) -> Table:
        """The recorded calls, who made each and what it returned (a value or an errno name)."""
        return _views.results(self)

    def events(self) -> Table:
        """The kernel's own events of this run (as root): state changes, resets and their reasons,
        retransmissions, drops; and the namespace's TCP counters that changed."""
        return _views.events(self)

    def timeline(self) -> Table:
        """Calls, packets and kernel events in one list, in time order."""
        return _views.timeline(self)

    def resets(self) -> list[tuple[str, str, State | None]]:
        """(who sent it, the kernel's reason, the sending socket's state) of every RST the kernel sent."""
        return _events.resets(self)

    def path(self, role: str) -> list[Transition]:
        """The transitions of RFC 9293's state machine `role`'s socket took, from the kernel's
        recorded events (for ``draw_state_diagram``); ValueError without events."""
        if not self.kernel_events:
            raise ValueError(f"run {self.name!r} has no kernel events ({self.events_unavailable}), so the path "
                             f"of {role!r} is not known; give state_path() the states the tables show instead")
        return _events.path(self, role)

    def about(self) -> Table:
        """Where this ran (kernel, time, isolation, capture), its notes and its unchecked claims."""
        return _views.about(self, self.unchecked)

    def ladder(self, *, emphasise: str | None = "R") -> Figure:
        """The run as a ladder diagram (a matplotlib figure); packets whose flags include
        every letter of `emphasise` (default: resets) drawn red and thick."""
        return _ladder.ladder(self, emphasise=emphasise)

    def ladder_alt(self, *, emphasise: str | None = "R") -> str:
        """The ladder diagram in words (its alt text)."""
        return _ladder.ladder_alt(self, emphasise=emphasise)

    def __str__(self) -> str:
        return "\n\n".join(str(part) for part in (self.about(), self.states(), self.results(), self.trace()))

    def _repr_html_(self) -> str:
        return Group([self.about(), self.states(), self.results(), self.trace()])._repr_html_()

    # -- claims ------------------------------------------------------------------
    def expect(self, *, calls: Mapping[str, object] | None = None, values: Mapping[str, object] | None = None,
               flow: Sequence[str] | None = None, states: Mapping[str, Mapping[str, object]] | None = None,
               packets: Mapping[int, Mapping[str, object]] | None = None,
               killed_by: str | None = None, resets: Sequence[tuple[str, str]] | None = None,
               transitions: Mapping[str, Sequence[str | State]] | None = None,
               counters: Mapping[str, int] | None = None) -> Run:
        """Check what the page claims against what the kernel did.

        * ``calls={"server: send #1": 1, "server: send #2": "EPIPE"}``: the value each call
          returned, or the name of the errno it raised;
        * ``values={"bytes sent": 8192}``: values recorded with ``lab.record``;
        * ``flow=["client [S]", "server [S.]", ...]``: every packet, in order;
        * ``states={"after close": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)}}``:
          each role's state (and Recv-Q) at a snapshot, in any spelling; ``None`` means not in
          the table; a dict checks more columns: ``{"state": "FIN_WAIT2", "send_q": 5,
          "timer": "timewait"}`` (the timer by its kind);
        * ``packets={6: {"flags": "R.", "seq": 1, "ack": 1, "ip": "IP6"}}``: fields of the
          packet at that index in the trace (any attribute of a trace packet);
        * ``killed_by="SIGPIPE"``;
        * ``resets=[("client", "TCP_TIMEWAIT_SOCKET")]``: every RST the kernel sent, in order,
          who sent it and the kernel's reason (``include/net/rstreason.h``; "" for any reason);
        * ``transitions={"client": ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"]}``: every state the
          kernel moved a socket through (its events, brief states included);
        * ``counters={"TcpExtTCPAbortOnData": 1}``: how much a namespace TCP counter moved.

        Raises ``ClaimError`` naming every claim that broke. A claim this machine cannot
        check (packets, without capture) is added to ``unchecked``, shown by ``about()``
        and printed to stderr: never counted as passed. Returns the run.
        """
        broken, unchecked = _claims.check(self, calls=calls, values=values, flow=flow, states=states,
                                          packets=packets, killed_by=killed_by, resets=resets,
                                          transitions=transitions, counters=counters)
        self.unchecked += [u for u in unchecked if u not in self.unchecked]
        _claims.report(self, broken, unchecked)
        return self

    def claim(self, text: str, *, private: bool = False) -> contextlib.AbstractContextManager[None]:
        """Check the claim `text` with plain code: ``with run.claim("no reset is sent"): assert ...``.

        A failed assertion in the block raises ``ClaimError`` naming `text`. What this machine
        could not observe makes the claim unchecked, as in ``expect``: inside the block, the
        packets of a run without capture (``packets``, ``flow()``) raise instead of being
        empty, and so do a snapshot, call or value a stopped run never reached. A `private`
        claim, about what only the run's own namespace shows (the whole socket table, as
        ``netstat`` prints it; a fixed port), is unchecked where the run shared the host's.
        """
        return _claims.claim(self, text, self.unchecked, private)

    @property  # type: ignore[override]
    def packets(self) -> list[_trace.Packet]:
        """The scenario's TCP packets, in order (see ``Observed.packets``); inside ``claim``,
        a run without capture has none to show, and says so."""
        return _degraded.packets(self, Observed.packets.__get__(self, type(self)))  # type: ignore[attr-defined]

    def value(self, name: str) -> Any:
        """A value the scenario recorded with ``lab.record(name, value)``; inside ``claim``, a
        setting this run could not make (``lab.sysctl`` without a private namespace) is unobserved."""
        return _degraded.value(self, super().value(name))

    def summarize(self, *, closer: str, sends: Sequence[str] = (), recv: str | None = None) -> Run:
        """Say which recorded calls are which, for the site's "what happens when" matrix.

        `closer` names the call that ends the connection; `sends` the other side's first
        and second send; `recv` its receive (names as for ``call``). Only names are given
        here: every value in the matrix is read from the run.
        """
        for key in (closer, *sends, *([recv] if recv else [])):
            try:
                self.call(key)  # fail now, with the known names, on a typo
            except KeyError:
                if not self.stopped:
                    raise
                return self  # a run that stopped before the call has nothing for the matrix
        self.summary = {"closer": closer, "sends": list(sends), "recv": recv}
        return self
