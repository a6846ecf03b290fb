"""run(): a scenario in a forked child, observed, with its records sent home.

Theory of operation
-------------------
``run(scenario)`` forks a *supervisor*, which makes itself the leader of a
process group and the subreaper of everything below it
(``PR_SET_CHILD_SUBREAPER``), enters the isolation the parent's probe found
possible (``_netns``), and forks the *scenario's process*. That one opens the
capture (``_capture``), installs the port rules (``_ports``) and calls
``scenario(lab)``. Everything the scenario records through ``lab`` is pickled
onto a pipe *as it happens*, so a process that is killed (a hang past the
timeout, ``SIGPIPE`` at its default action) still leaves the parent all it saw
up to that moment. At the end the scenario's process flushes the capture,
sends the frames and leaves with ``os._exit``: a forked child must never return
into the caller's code (in a docs build, that would be a second Sphinx).

The supervisor waits (``pidfd``) for the scenario's process to end, for the
parent to die, or for the parent's ``SIGTERM`` at the timeout. Then it kills
and reaps every process still below it (a scenario's ``subprocess`` or forked
child, even one that made itself a daemon: orphans come to the subreaper),
names each in a note, sends the scenario's wait status and exits. The
scenario's process dies with the supervisor (``PR_SET_PDEATHSIG``), so no part
of a run outlives its parent.

The parent reads the pipe until the supervisor exits: not until end-of-file,
which a process the scenario started could hold off forever by keeping the
pipe's write end. At the timeout it asks the supervisor to stop (``SIGTERM``)
and, after a grace period, kills the process group; on ``KeyboardInterrupt``
it stops the run the same way and raises again. Records are decoded in time
linear in their size. The parent's signal handlers, working directory and
namespaces are never touched: everything that changes them happens in the
children.

Why fork and not multiprocessing: the scenario is a function defined in an
example script, which sphinx-gallery executes in a fake ``__main__`` that a
spawned interpreter could not import. A parent with threads is not forked:
``_spawn`` starts a fresh interpreter instead and hands it the scenario by
value (see its theory of operation).
"""

from __future__ import annotations

import dataclasses
import errno as errno_module
import math
import os
import pickle
import platform
import select
import signal
import socket
import struct
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import _capture, _counters, _degraded, _hosts, _kernel, _netns, _ports, _records, _spawn, _states, _trace, _wire
from ._records import Call, Calling, Exited, Failed, Finished, Frames, Named, Note, Snapshot, Started, Value
from ._run import Run
from ._vocab import Endpoint, State, short_repr

DEFAULT_TIMEOUT = 10.0
_LENGTH = struct.Struct("!I")

#: Names of the poll(2) events, for reporting what wait_poll saw.
POLL_EVENTS = {
    select.POLLIN: "POLLIN", select.POLLPRI: "POLLPRI", select.POLLOUT: "POLLOUT",
    select.POLLERR: "POLLERR", select.POLLHUP: "POLLHUP", select.POLLNVAL: "POLLNVAL",
    getattr(select, "POLLRDHUP", 0x2000): "POLLRDHUP",
}


class ScenarioError(RuntimeError):
    """The scenario raised; the message carries the child's traceback."""


class ScenarioTimeout(ScenarioError):
    """The scenario did not finish in time and was killed."""


class ScenarioKilled(ScenarioError):
    """The scenario's process was killed by a signal it did not expect."""


def poll_names(mask: int) -> str:
    """``POLLIN|POLLRDHUP`` for a revents mask."""
    return "|".join(name for bit, name in POLL_EVENTS.items() if mask & bit) or "0"


class Lab:
    """What a scenario uses to observe itself: snapshots, calls, waits, notes.

    A scenario receives one ``Lab``; run by hand or in the docs it is the same.
    Every method records what it saw, in order, for the page.
    """

    def __init__(self, send: Callable[[object], None], capture: _capture.Capture | None,
                 isolation: _netns.Isolation, ports: _ports.Ports | None = None,
                 net: _hosts.TwoHosts | None = None) -> None:
        self._send = send
        self._capture = capture
        self._net = net
        self._frames_sent = 0
        self.isolation = isolation
        self._ports = ports or _ports.Ports(isolation.private)
        self._ports.on_port = self._port_used
        self._own: set[tuple[Endpoint, Endpoint]] = set()
        self._seen: dict[int, tuple[Endpoint, Endpoint]] = {}  # id(socket) -> (local, peer) last seen open
        self._waits_noted: set[str] = set()
        # Sockets open before the scenario began are the caller's (inherited over fork), not its own.
        self._before = set() if isolation.private else _socket_inodes()

    def _port_used(self, page: int, used: int) -> None:
        """A port became the run's own (host mode): capture it, and say when it is not the page's."""
        if self._capture is not None:
            self._capture.watch(used)
        if page != used:
            self.note(f"WARNING: this run used port {used} where the page says {page}: without a private "
                      f"namespace the host's ports are shared, and {page} may be another program's. "
                      f"Fix: {self.isolation.fix or _netns.FIX_NAMESPACES}")

    # -- recording -----------------------------------------------------------
    def _emit(self, record: object) -> None:
        self._send_frames()
        self._send(record)

    # -- two hosts -------------------------------------------------------------
    @property
    def net(self) -> _hosts.TwoHosts:
        """The two hosts and their link, in a run given ``wire=socklab.Wire(...)``."""
        if self._net is None:
            raise AttributeError("this run has one host (loopback): two hosts and a link need "
                                 "run(scenario, wire=socklab.Wire(delay=0.025))")
        return self._net

    @property
    def client(self) -> _hosts.Host:
        """The client host (192.0.2.1): ``with lab.client:`` makes sockets there."""
        return self.net.client

    @property
    def server(self) -> _hosts.Host:
        """The server host (192.0.2.2): ``with lab.server:`` makes sockets there."""
        return self.net.server

    @property
    def link(self) -> _wire.Link:
        """The link between the hosts: ``drop``, ``hold``/``release``, ``slow``, ``cut``/``restore``,
        ``delay``; its own ``wait_packet`` returns the frame with its fate."""
        assert self.net.link is not None
        return self.net.link

    def finish(self) -> None:
        """End of the scenario: flush the capture, send the frames not sent yet and the ports used."""
        if self._capture is not None:
            self._capture.flush()
        if self._net is not None:
            self.finish_link()
        self._send_frames()
        self._send(_records.Ports(tuple(sorted(self._ports.mapped.items())), tuple(sorted(self._ports.bound))))

    def finish_link(self) -> None:
        """Stop the link and send its frames with their fates, once (also after a failed scenario)."""
        net, self._net = self._net, None
        if net is None or net.link is None:
            return
        link = net.link
        # The capture ends with the scenario: what is on its way then is delivered (a held frame
        # stays held, and is lost); what enters the link afterwards is not recorded. A socket the
        # scenario left to close as it returned has sent its FIN already: the relay reads it first.
        end = time.time_ns()
        if link.error is None:
            link.flush()
            for frame in link.frames():
                if frame.fate == _wire.QUEUED:
                    link.wait_settled(frame, link.delay + 1.0)
        failed = link.error
        settings = net.settings()
        link.close()
        self._send(_records.LinkFrames(tuple(f for f in link.frames() if f.sent_ns <= end), settings))
        if failed is not None:
            raise RuntimeError(f"the link's relay failed during the scenario: {failed!r}") from failed

    def _send_frames(self) -> None:
        if self._capture is None:
            return
        self._capture.read_available()
        new = self._capture.frames[self._frames_sent :]
        if new:
            self._frames_sent += len(new)
            self._send(Frames(tuple((f.time_ns, f.data) for f in new)))

    def _rows(self) -> tuple[_states.SocketRow, ...]:
        if self._net is not None:
            rows = []
            for name, host_rows in self._net.sockets().items():
                rows += [dataclasses.replace(row, host=name) for row in host_rows]
            return tuple(sorted(rows, key=_states.table_order))
        rows = _states.snapshot()
        if not self.isolation.private:
            rows = self._only_own(rows)
        return tuple(sorted(rows, key=_states.table_order))

    def _only_own(self, rows: list[_states.SocketRow]) -> list[_states.SocketRow]:
        """Without a private namespace: keep the sockets this process owns or owned.

        Its own: open here and not before the scenario began; seen open here before (in a
        snapshot, or by a ``lab`` call on it) and still open elsewhere (closed here while a
        forked child, or a thread's blocked call, still holds it); or closed (inode 0, an
        orphan or a TIME_WAIT socket) and either seen open before or on a port of the
        run's own (``_ports``: chosen free for this run)."""
        inodes = _socket_inodes() - self._before
        own_ports = self._ports.own
        seen = self._own | set(self._seen.values())
        kept = []
        for row in rows:
            if row.inode in inodes:
                self._own.add((row.local, row.peer))
                kept.append(row)
            elif (row.local, row.peer) in seen or (
                    row.inode == 0 and (row.local_port in own_ports or row.peer_port in own_ports)):
                kept.append(row)
        return kept

    def snapshot(self, label: str) -> None:
        """Record the socket table now (what ``ss -tanx`` would print), under `label`, with the
        ``TCP_INFO`` of each of the scenario's open TCP sockets."""
        self._emit(Snapshot(label, time.time_ns(), self._rows(), self._tcp_info()))

    def _tcp_info(self) -> tuple[tuple[int, Any], ...]:
        info = []
        for sock in list(self._ports.sockets):
            if sock.fileno() < 0 or sock.type != socket.SOCK_STREAM:
                continue
            try:
                info.append((os.fstat(sock.fileno()).st_ino, _counters.tcp_info(sock)))
            except OSError:
                continue
        return tuple(sorted(info, key=lambda pair: pair[0]))

    def call(self, fn: Callable[..., Any], *args: Any, label: str | None = None, by: str | None = None,
             on: socket.socket | None = None, catch: type[Exception] | tuple[type[Exception], ...] = (),
             **kwargs: Any) -> Any:
        """Call ``fn(*args)``, record its return value or errno, and return the value.

        An ``OSError`` is recorded by its errno name (``EPIPE``) and not raised:
        the scenario goes on, and ``None`` is returned. The call itself stays in
        the scenario's text: ``lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")``.
        Who made the call is the role of its socket (``server``), or `by`.

        Library calls (see ``_record_exception``): `on` names the socket a call works on when
        `fn` is not that socket's own method (``lab.call(conn.getresponse, on=conn.sock)``);
        `catch` lists exceptions other than ``OSError`` to record rather than raise
        (``catch=http.client.HTTPException``). Every recorded failure keeps the exception's
        name and message as a traceback prints them.
        """
        owner = getattr(fn, "__self__", None)
        ref = _records.SocketRef()
        if on is not None and on.fileno() >= 0:
            ref = self._identify(on)
        elif isinstance(owner, socket.socket) and owner.fileno() >= 0:
            ref = self._identify(owner)
        label = label or f"{getattr(fn, '__name__', repr(fn))}()"
        # Announce the call first, so a signal that kills us during it is attributed.
        self._emit(Calling(label))
        start = time.time_ns()
        try:
            value = fn(*args, **kwargs)
        except OSError as e:
            self._emit(_record_exception(e, label, start, ref, by))
            return None
        except catch as e:
            self._emit(_record_exception(e, label, start, ref, by))
            return None
        self._emit(_call_record(label, start, time.time_ns(), value, ref, by))
        return value

    def record(self, name: str, value: Any) -> None:
        """Record a value the scenario measured (bytes sent, how long a call took), for the
        page and for claims: ``run.value(name)``, ``run.expect(values={name: ...})``."""
        if not _keepable(value):
            raise ValueError(f"lab.record({name!r}, ...): the value must pickle to at most "
                             f"{MAX_VALUE_BYTES} bytes (record a summary of it instead)")
        self._emit(Value(name, time.time_ns(), value))

    def name(self, sock: socket.socket, name: str) -> None:
        """Call `sock` `name` in tables, traces and claims (instead of client/server)."""
        ref = self._identify(sock)
        self._emit(Named(name, ref.inode, ref.local, ref.peer))

    def _identify(self, sock: socket.socket) -> _records.SocketRef:
        """An open socket's addresses and inode; its addresses are remembered for
        ``wait_state`` once the socket is closed."""
        local, peer = Endpoint.of_socket(sock), Endpoint.of_socket(sock, peer=True)
        if local is not None and peer is not None:
            self._seen[id(sock)] = (local, peer)
        listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        return _records.SocketRef(local, peer, listening, os.fstat(sock.fileno()).st_ino)

    def note(self, text: str) -> None:
        """Add a line of explanation to the run's output."""
        self._emit(Note(text))

    def sysctl(self, name: str, value: object = None, *, required: bool = True) -> str:
        """Read, and with `value` write, a setting of the run's own network namespace
        (``lab.sysctl("net.ipv4.tcp_fin_timeout", 1)``); return its value now. Records it as
        the value `name` (and ``"<name> before"``). Never writes the host's: without a private
        namespace, the scenario stops here when it needs the setting (`required`), or goes
        on with the host's; either way the run says so and claims about it are unchecked."""
        return _degraded.sysctl(self, name, value, required=required)

    # -- waiting -------------------------------------------------------------
    def wait_state(self, sock: socket.socket | tuple[str, str], state: str | State | None,
                   timeout: float = 2.0) -> None:
        """Wait until a socket is in `state` (kernel or ss name), or gone (None).

        `sock` is an open socket (found by its inode, so a socket that was reset
        and lost its peer address is still found); a socket closed through
        ``lab.call(sock.close)`` (found by the addresses it had); or a
        ``(local, peer)`` pair such as ``("127.0.0.1:50000", "127.0.0.1:4321")``.

        Wait for a state before a snapshot that shows it: a packet captured by
        ``wait_packet`` may not have been processed by the receiving socket yet.
        """
        timeout = _seconds(timeout)
        inode = 0
        key: tuple[Endpoint | None, Endpoint | None] = (None, None)
        if not isinstance(sock, socket.socket):
            key = (Endpoint.parse(self._ports.translate_address(sock[0])),
                   Endpoint.parse(self._ports.translate_address(sock[1])))
        else:
            if sock.fileno() >= 0:
                ref = self._identify(sock)
                inode, key = ref.inode, (ref.local, ref.peer)
            elif id(sock) in self._seen:  # closed: it lives on in the kernel under its addresses
                key = self._seen[id(sock)]
            else:
                raise ValueError("this socket was closed before socklab saw its addresses (pass it to "
                                 "lab.call or lab.name while open, or give (local, peer) strings)")
        want = State.parse(state).machine if state else None

        def current() -> State | None:
            rows = _states.snapshot(unix=False) if self._net is None else self._rows()
            for row in rows:
                if (row.inode == inode) if inode else (row.local == key[0] and row.peer == key[1]):
                    return row.state.machine
            return None

        seen = _wait(lambda: current() == want, timeout)
        if not seen:
            now = current()
            raise TimeoutError(
                f"socket {key[0]} -> {key[1]} did not reach {want.rfc if want else 'gone'} within {timeout}s "
                f"(it is {now.rfc if now else 'gone'})")

    def wait_packet(self, flags: str, *, sport: int | None = None, dport: int | None = None,
                    win: int | None = None, after: int = 0, timeout: float = 2.0) -> None:
        """Wait until a TCP packet with exactly these tcpdump flags (``"R"``, ``"F."``) is captured.

        `sport`/`dport` narrow it to a direction, `win` to an advertised window (``win=0``:
        the receiver's buffer is full); `after` skips that many earlier
        matches (wait for the second ``[.]``, say). Without capture it waits instead
        for what such a packet causes (every socket's data and FIN acknowledged)
        and says so in the run's notes.
        The packet is captured as it leaves its sender: to show its effect on the
        receiver's state, follow with ``wait_state``. In a two-hosts run it waits until the
        packet has left the link (delivered, or dropped by a rule); ``lab.link.wait_packet``
        waits for it entering the link instead, and returns its frame.
        """
        timeout = _seconds(timeout)
        sport, dport = self._ports.translate(sport), self._ports.translate(dport)
        if self._net is not None:  # the link is the capture: the packet as it entered the link
            def fits(packet: _trace.Packet) -> bool:
                return ((not sport or packet.sport == sport) and (not dport or packet.dport == dport)
                        and (win is None or packet.win == win))

            frame = self.link.wait_packet(flags, match=fits, after=after, timeout=timeout)
            self.link.wait_settled(frame, timeout)
            return
        if self._capture is None:
            self._wait_settled(f"[{flags}]" + (f" win={win}" if win is not None else ""), timeout,
                               window_shut=win == 0)
            return
        wanted = flags
        count = 0

        def matches(frame: _capture.Frame) -> bool:
            nonlocal count
            packet = _trace.parse(frame.data)
            if packet is None or packet.flags != wanted:
                return False
            if (sport and packet.sport != sport) or (dport and packet.dport != dport):
                return False
            if win is not None and packet.win != win:
                return False
            count += 1
            return count > after

        try:
            self._capture.wait(matches, timeout)
        except TimeoutError:
            narrowed = (("sport", sport), ("dport", dport), ("win", win))
            which = ", ".join(f"{k}={v}" for k, v in narrowed if v is not None)
            raise TimeoutError(f"no [{flags}] packet ({which or 'any'}) within {timeout}s") from None

    def _wait_settled(self, packet: str, timeout: float, window_shut: bool = False) -> None:
        """Without capture: wait for what a packet the scenario waits for causes, on every one
        of the run's TCP sockets: nothing sent and unacknowledged, no FIN or SYN awaiting its
        ACK. Say, once per kind of wait, that the packet itself could not be seen."""
        if packet not in self._waits_noted:
            self._waits_noted.add(packet)
            self.note(f"WARNING: no capture, so wait_packet({packet}) could not see the packet; it waited "
                      f"instead until every socket of the run had its data and FIN acknowledged (what "
                      f"the packet causes). Fix: {self.isolation.fix or _netns.FIX_CAPTURE}")

        if window_shut:  # a shut window: the sender's persist timer shows it
            if not _wait(lambda: any(row.timer_kind == "persist" for row in self._rows()), timeout):
                raise TimeoutError(f"no capture, and no socket's window shut within {timeout}s "
                                   f"(waiting in place of the {packet} packet)")
            return

        def settled() -> bool:
            for row in self._rows():
                if row.netid != "tcp" or row.state in (State.LISTEN, State.CLOSE, State.TIME_WAIT):
                    continue
                if row.state in _UNSETTLED or row.send_q:
                    return False
            return True

        if not _wait(settled, timeout):
            raise TimeoutError(f"no capture, and the sockets did not settle within {timeout}s "
                               f"(waiting in place of the {packet} packet)")

    def wait_poll(self, sock: socket.socket, events: int, timeout: float = 2.0,
                  label: str | None = None, by: str | None = None) -> int:
        """poll(2) one socket for `events`; record and return revents (0 on timeout).

        The call's recorded value is the names of the events (``"POLLIN|POLLHUP"``)."""
        timeout = _seconds(timeout)
        start = time.time_ns()
        p = select.poll()
        p.register(sock, events)
        result = p.poll(timeout * 1000)
        revents = result[0][1] if result else 0
        names = poll_names(revents)
        self._emit(Call(label or f"poll({poll_names(events)})", start, time.time_ns(), names, names, None,
                        self._identify(sock), by))
        return revents


#: A call's value or a recorded value is kept when it pickles to at most this many bytes.
MAX_VALUE_BYTES = 256 * 1024


def _keepable(value: Any) -> bool:
    try:
        return len(pickle.dumps(value)) <= MAX_VALUE_BYTES
    except Exception:  # noqa: BLE001 - anything that will not pickle is not kept
        return False


def _call_record(label: str, start: int, end: int, value: Any, ref: _records.SocketRef, by: str | None) -> Call:
    """The record of a call that returned; its value kept when it can cross the pipe."""
    short = short_repr(value)
    if _keepable(value):
        return Call(label, start, end, value, short, None, ref, by)
    return Call(label, start, end, None, short, None, ref, by, kept=False)


def _record_exception(e: Exception, label: str, start: int, ref: _records.SocketRef, by: str | None) -> Call:
    """The record of a call that raised: its errno's name (None for an exception without one,
    such as ``http.client.RemoteDisconnected``), and the exception named as a traceback names it."""
    kind = type(e)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    number = e.errno if isinstance(e, OSError) else None
    errno_name = errno_module.errorcode.get(number, str(number)) if number else None
    return Call(label, start, time.time_ns(), None, None, errno_name, ref, by, exception=name, message=str(e))


#: States that wait for an ACK of something the socket sent (a SYN or a FIN).
_UNSETTLED = frozenset({State.SYN_SENT, State.SYN_RECV, State.NEW_SYN_RECV, State.FIN_WAIT1, State.CLOSING,
                        State.LAST_ACK})


def _socket_inodes() -> set[int]:
    """Inodes of the sockets this process has open."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition` with a short, growing interval until true or `timeout`."""
    deadline = time.monotonic() + timeout
    pause = 0.0001
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


# -- the child's side: a supervisor and the scenario's process -----------------

class _Stop(Exception):
    """The parent asked the supervisor to stop the run (SIGTERM at the timeout)."""


@dataclasses.dataclass(frozen=True)
class _Exited:
    """The supervisor's last record: the scenario process's wait status."""

    status: int
    stopped: str  #: "" when the scenario ended by itself, else why it was killed


@dataclasses.dataclass(frozen=True)
class _WireFailed:
    """The supervisor could not build the run's two hosts (``_hosts.WireUnavailable``, ``SysctlError``)."""

    kind: str
    message: str


@dataclasses.dataclass(frozen=True)
class _NamespaceReady:
    """The supervisor is in the run's namespace (its inode), and waits for the parent's go.
    In a two-hosts run, the hosts' namespaces too: {inode: host name}."""

    inode: int
    hosts: dict[int, str] = dataclasses.field(default_factory=dict)


def _supervise(scenario: Callable[[Lab], Any], isolation: _netns.Isolation, parent: int, events: bool,
               wire: _hosts.Wire | None, fd: int) -> None:
    """Body of the child (forked, or spawned from a threaded parent): run the scenario in a
    process of its own, end everything it left behind, report. Never returns.

    With `events` (the parent records the kernel's events): once in the namespace, say its
    inode and wait for the parent's SIGUSR1 (it watches the namespace now); after the
    scenario, cause the end marker, report, and wait for the second SIGUSR1 (the parent
    stopped watching) before exiting, so the namespace outlives the watch."""
    code = 0
    if events:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        previous_sigterm = signal.getsignal(signal.SIGTERM)

        def stop(signum: int, frame: object) -> None:
            raise _Stop("the run's timeout")

        signal.signal(signal.SIGTERM, stop)
        os.setpgid(0, 0)
        _netns.prctl(_netns.PR_SET_CHILD_SUBREAPER, 1)
        parent_fd = os.pidfd_open(parent)
        if os.getppid() != parent:  # the parent died before we could watch it
            os._exit(0)
        try:
            _netns.enter(isolation.mode)
        except OSError as e:  # the probe said yes, the child was refused
            isolation = _netns.Isolation("none", False, f"entering the namespace failed: {e}",
                                         _netns.FIX_NAMESPACES)
            if events:  # never watch the host's own namespace
                events = False
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        me = os.getpid()
        net = None
        if wire is not None:  # built here, so its namespaces are watched from their first event
            try:
                net = wire.build(start=False)
            except BaseException as e:  # noqa: BLE001 - report it as the run's failure
                _write_record(fd, _WireFailed(type(e).__name__, str(e)))
                _write_record(fd, _Exited(0, ""))
                os._exit(0)
        if events:
            _write_record(fd, _NamespaceReady(os.stat("/proc/self/ns/net").st_ino,
                                              net.inodes() if net is not None else {}))
            if signal.sigtimedwait({signal.SIGUSR1}, STOP_GRACE) is None:
                os._exit(0)  # the parent did not answer: it is gone
        pid = os.fork()
        if pid == 0:
            if events:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
            _scenario_process(scenario, isolation, fd, me, previous_sigterm, net)
        scenario_fd = os.pidfd_open(pid)
        stopped = ""
        try:
            ready, _, _ = select.select([scenario_fd, parent_fd], [], [])
            if parent_fd in ready and scenario_fd not in ready:
                stopped = "its parent process died"
        except _Stop as e:
            stopped = str(e)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stopped:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        for text in _end_descendants(me):
            _write_record(fd, Note(text))
        if events:
            _kernel.end_marker()  # the last event of the run, caused in its namespace
        _write_record(fd, _Exited(status, stopped))
        if events:
            signal.sigtimedwait({signal.SIGUSR1}, STOP_GRACE)  # the parent has stopped watching
    except BaseException:  # noqa: BLE001 - a forked child must never return
        code = 70
    finally:
        os._exit(code)


def _scenario_process(scenario: Callable[[Lab], Any], isolation: _netns.Isolation, fd: int,
                      supervisor: int, sigterm: Any, net: _hosts.TwoHosts | None = None) -> None:
    """Body of the scenario's process (the supervisor's child). Never returns."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, sigterm)
        _netns.prctl(_netns.PR_SET_PDEATHSIG, signal.SIGKILL)  # no scenario outlives its supervisor
        if os.getppid() != supervisor:
            os._exit(code)

        def send(record: object) -> None:
            _write_record(fd, record)

        capture = None
        if net is not None:  # the link is the capture
            assert net.link is not None
            net.link.start()
        elif isolation.capture:
            try:  # in the host's namespace, the kernel filters for the run's own ports
                capture = _capture.Capture("lo", ports=None if isolation.private else set())
            except OSError as e:
                isolation = dataclasses.replace(isolation, capture=False,
                                                reason=f"opening the capture failed: {e}", fix=_netns.FIX_CAPTURE)
        send(Started(platform.release(), isolation.mode, capture is not None or net is not None, isolation.reason,
                     isolation.fix, time.time_ns()))
        ports = _ports.Ports(isolation.private)
        lab = Lab(send, capture, isolation, ports, net)
        ports.install()
        counters = _read_counters(net) if isolation.private else None  # the namespace's own, or each host's
        try:
            try:
                scenario(lab)
            except _degraded.NotHere as e:  # this machine cannot do what comes next: the run ends here
                send(_degraded.stop_record(e))
            lab.finish()
            if counters is not None:
                changed = _counter_changes(counters, _read_counters(net))
                send(_records.Counters(tuple(sorted(changed.items()))))
            send(Finished(time.time_ns()))
        except BaseException as e:  # noqa: BLE001 - report everything to the parent
            try:
                lab.finish_link()
            except BaseException:  # noqa: BLE001, S110 - the scenario's own failure is the one to report
                pass
            lab._send_frames()
            send(Failed(type(e).__name__, str(e), traceback.format_exc()))
        finally:
            if capture is not None:  # else the exit would wait for its RCU grace period (_capture)
                capture.close()
    except BaseException:  # noqa: BLE001
        code = 70
    finally:
        os._exit(code)


def _read_counters(net: _hosts.TwoHosts | None) -> dict[str, dict[str, int]]:
    """The TCP counters of the run's namespace ({"": reading}); in a two-hosts run, each
    host's ({"client:": reading, "server:": reading})."""
    if net is None:
        return {"": _counters.read_counters()}
    out = {}
    for name, host in net.hosts().items():
        with host:
            out[f"{name}:"] = _counters.read_counters()
    return out


def _counter_changes(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    """The counters that moved, named ``TCPAbortOnData`` (or ``server:TCPAbortOnData``)."""
    return {prefix + name: moved for prefix in before
            for name, moved in _counters.changed(before[prefix], after[prefix]).items()}


def _write_record(fd: int, record: object) -> None:
    data = pickle.dumps(record)
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _processes() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state letter)} of every process /proc shows."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # it ended while we looked
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        found[int(entry)] = (int(fields[1]), fields[0].decode())
    return found


def _descendants(root: int) -> list[int]:
    """The living (not zombie) descendants of `root`, parents before children."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        if procs[pid][1] != "Z":
            out.append(pid)
        todo += children.get(pid, [])
    return out


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        text = ""
    return short_repr(text)[1:-1] if len(text) > 60 else text or "?"


def _end_descendants(me: int, timeout: float = 5.0) -> list[str]:
    """Kill and reap everything the scenario left running (its orphans are ours: we are
    their subreaper); return one line per process, for the run's notes."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:  # no child at all: every orphan would be ours, so nothing is left
        return []
    seen: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        living = _descendants(me)
        for pid in living:
            if pid not in seen:
                seen[pid] = _command_line(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        children_left = True
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                children_left = False
                break
        if not living and not children_left:
            break
        if time.monotonic() > deadline:
            seen.update({pid: seen.get(pid, "?") + " (could not be ended)" for pid in _descendants(me)})
            break
        time.sleep(0.001)
    return [f"WARNING: still running when the scenario ended, killed by socklab: {command} (pid {pid})"
            for pid, command in sorted(seen.items())]


# -- the parent ---------------------------------------------------------------

#: How long the supervisor gets, after the timeout, to end the scenario and report.
STOP_GRACE = 5.0


def _seconds(value: object, name: str = "timeout", zero: bool = True) -> float:
    """A timeout as a float, or a clear error: a finite number of seconds, not negative
    (and above 0 unless `zero`: a wait may just look, a run must have time to run)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be a finite number of seconds {'at least' if zero else 'above'} 0, "
                         f"not {value!r} (for example {name}=10)")
    return float(value)


def run(scenario: Callable[[Lab], Any], *, name: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        allow_signals: bool = False, kernel_events: bool = True, wire: _hosts.Wire | None = None) -> Run:
    """Run `scenario(lab)` in a private network namespace and return what it did.

    The scenario runs in a forked child; this returns a ``Run`` with the socket
    tables, calls, packets and notes, or raises ``ScenarioError`` (with the
    child's traceback), ``ScenarioTimeout`` after `timeout` seconds, or
    ``ScenarioKilled`` when a signal killed it (unless `allow_signals`, in
    which case the ``Run`` says which signal, in ``run.killed_by``). As root, in a
    private namespace, the kernel's own events are recorded too (``kernel_events=False``
    turns that off; the run then says so). With `wire` (``socklab.Wire(delay=0.025)``) the
    scenario gets two hosts joined by a link it controls (``lab.client``, ``lab.server``,
    ``lab.link``), and the link is the run's capture; this needs network namespaces
    (``WireUnavailable`` otherwise). Processes
    the scenario started and left running are killed when it ends, and named
    in the run's notes. ``KeyboardInterrupt`` stops the run (nothing is left
    running) and is raised again.
    """
    if not callable(scenario):
        raise TypeError(f"run() needs a function taking a Lab, not {scenario!r}")
    timeout = _seconds(timeout, zero=False)
    name = name or str(getattr(scenario, "__name__", "scenario"))
    isolation = _netns.probe()
    if wire is not None and not isinstance(wire, _hosts.Wire):
        raise TypeError(f"run(..., wire=...) takes a socklab.Wire(delay=...), not {wire!r}")
    if wire is not None and not isolation.private:
        raise _hosts.WireUnavailable(f"scenario {name!r} needs two hosts joined by a link, which need network "
                                     f"namespaces: {isolation.reason}. Fix: {isolation.fix or _netns.FIX_NAMESPACES}")
    _capture.keep_timestamping_on()
    recorder = _kernel.recorder() if isolation.mode == "netns" and kernel_events else None
    live = recorder if isinstance(recorder, _kernel.Recorder) else None
    watching = live is not None
    r, w = os.pipe()
    parent = os.getpid()
    # fork, or spawn a fresh interpreter if this process has threads (_spawn)
    pid = _spawn.start(_supervise, (scenario, isolation, parent, watching, wire), w)
    os.close(w)
    try:
        os.setpgid(pid, pid)  # also done by the child: whichever runs first, killpg works
    except OSError:  # it already exited, or already did it itself
        pass
    records: list[object] = []
    reader = _RecordReader(records)
    kernel = _KernelWatch(live, pid)
    try:
        timed_out = _collect(pid, r, reader, time.monotonic() + timeout, kernel.on_record)
    except BaseException:  # KeyboardInterrupt above all: end the run, then let it through
        try:
            _collect(pid, r, reader, time.monotonic())  # stop now: the supervisor ends what the scenario started
        finally:
            kernel.cancel()
            _kill_group(pid)
            os.waitpid(pid, 0)
            os.close(r)
        raise
    kernel.cancel()  # a run that never reached its end: stop watching before the namespace can go
    records.append(kernel.record(recorder, isolation) if kernel_events else
                   _records.KernelEvents((), "not asked for: run(..., kernel_events=False)", ""))
    os.close(r)
    _kill_group(pid)  # whatever escaped the supervisor, before its pid (our group id) is freed
    _, supervisor_status = os.waitpid(pid, 0)
    exited = next((rec for rec in records if isinstance(rec, _Exited)), None)
    wire_failed = next((rec for rec in records if isinstance(rec, _WireFailed)), None)
    records = [rec for rec in records if not isinstance(rec, _Exited | _NamespaceReady | _WireFailed)]
    if exited is not None and os.WIFSIGNALED(exited.status):
        records.append(Exited(signal.Signals(os.WTERMSIG(exited.status)).name, None, timed_out))
    elif exited is not None:
        records.append(Exited(None, os.waitstatus_to_exitcode(exited.status), timed_out))
    run_ = Run(name, records)
    last = run_.last_step()
    if timed_out:
        raise ScenarioTimeout(f"scenario {name!r} did not finish within {timeout}s and was killed; "
                              f"its last recorded step was: {last}")
    if wire_failed is not None:  # the lab's, not the scenario's
        kind = getattr(_hosts, wire_failed.kind, None)
        raise (kind if isinstance(kind, type) and issubclass(kind, Exception) else _hosts.WireUnavailable)(
            f"scenario {name!r}: {wire_failed.message}")
    failed = next((rec for rec in records if isinstance(rec, Failed)), None)
    if failed is not None:
        raise ScenarioError(f"scenario {name!r} raised {failed.kind}: {failed.message}\n\n"
                            f"Traceback in the scenario's process:\n{failed.traceback}")
    if exited is None:
        raise ScenarioError(f"socklab's supervising process ended without reporting "
                            f"({_status_text(supervisor_status)}); the scenario's last recorded step was: {last}")
    if os.WIFSIGNALED(exited.status):
        killed = run_.killed_by
        if not allow_signals:
            raise ScenarioKilled(f"scenario {name!r} was killed by {killed} during: {last}. "
                                 "Pass allow_signals=True to run() if the page means to show it.")
    elif not any(isinstance(rec, Finished) for rec in records):
        raise ScenarioError(f"scenario {name!r} ended without reporting ({_status_text(exited.status)}); "
                            f"its last recorded step was: {last}")
    return run_


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # the group is empty
        pass


class _KernelWatch:
    """The parent's side of recording the kernel's events (``_kernel``): watch the run's
    namespace when the supervisor says it is ready, stop when it reports the end."""

    def __init__(self, recorder: _kernel.Recorder | None, supervisor: int) -> None:
        self.recorder, self.supervisor = recorder, supervisor
        self.watching = False
        self.watched = False
        self.events: list[Any] = []
        self.error = ""

    def on_record(self, record: object) -> None:
        if self.recorder is None:
            return
        if isinstance(record, _NamespaceReady):
            self.recorder.watch(record.inode, hosts=record.hosts or None)
            self.watching = self.watched = True
            os.kill(self.supervisor, signal.SIGUSR1)
        elif isinstance(record, _Exited) and self.watched:
            if self.watching:
                try:
                    self.events = self.recorder.stop()
                except TimeoutError as e:  # no end marker: say so, never guess
                    self.error = str(e)
                self.watching = False
            os.kill(self.supervisor, signal.SIGUSR1)  # it waits for this before letting its namespace go

    def cancel(self) -> None:
        if self.recorder is not None and self.watching:
            self.recorder.cancel()
            self.watching = False
            self.error = self.error or "the run ended before its end marker: its events were not read"

    def record(self, recorder: object, isolation: _netns.Isolation) -> _records.KernelEvents:
        if isinstance(recorder, _kernel.Recorder):
            if not self.watched:
                return _records.KernelEvents((), "the run's namespace never became ready to be watched",
                                             "see the run's other notes")
            if self.error:
                return _records.KernelEvents((), self.error, "report it: socklab could not read the events")
            return _records.KernelEvents(tuple(self.events), missing=tuple(sorted(recorder.missing.items())))
        if isinstance(recorder, _kernel.Unavailable):
            return _records.KernelEvents((), recorder.reason, recorder.fix)
        return _records.KernelEvents((), f"kernel events need root and a private namespace (this run: "
                                         f"{isolation.describe().split('. Missing')[0]})", _kernel.FIX_ROOT)


def _collect(pid: int, fd: int, reader: _RecordReader, deadline: float,
             on_record: Callable[[object], None] | None = None) -> bool:
    """Read records until the supervisor `pid` exits; True if the deadline passed first.

    The supervisor's exit, not the pipe's end-of-file, ends the run: a process the
    scenario started may hold the pipe's write end open. At the deadline the supervisor
    is asked to stop the scenario (SIGTERM) and report; if it cannot within
    ``STOP_GRACE``, the whole process group is killed.
    """
    os.set_blocking(fd, False)
    exited_fd = os.pidfd_open(pid)
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if timed_out:  # the grace is over too
                    _kill_group(pid)
                    break
                timed_out = True
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_GRACE
                continue
            ready, _, _ = select.select([fd, exited_fd], [], [], left)
            seen = len(reader.records)
            ended = fd in ready and not reader.read(fd)  # end of file: every writer has gone
            if exited_fd in ready:
                reader.read(fd)  # what it wrote before exiting is in the pipe now
            if on_record is not None:
                for record in reader.records[seen:]:
                    on_record(record)
            if ended or exited_fd in ready:
                break
    finally:
        os.close(exited_fd)
    return timed_out


class _RecordReader:
    """Length-prefixed pickles from a pipe, decoded in time linear in their size."""

    def __init__(self, records: list[object]) -> None:
        self.records = records
        self._buffer = bytearray()

    def read(self, fd: int) -> bool:
        """Read what the pipe holds now; False at end of file."""
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        buffer = self._buffer
        buffer += chunk
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer, start)
            end = start + _LENGTH.size + size
            if len(buffer) < end:
                break
            with memoryview(buffer) as view:
                self.records.append(pickle.loads(view[start + _LENGTH.size : end]))
            start = end
        if start:
            del buffer[:start]
