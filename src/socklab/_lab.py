"""Lab: what a scenario is given to act and observe with, in the scenario's process.

``run()`` (``_runner``) starts the scenario's process (``_supervisor``) and calls
``scenario(lab)`` there. Every ``Lab`` method records what it does or sees as a
record (``_records``) sent to the parent at once: calls with their values or
errno, snapshots of the socket table with ``TCP_INFO``, values, names, notes.
Its waits (``wait_state``, ``wait_packet``, ``wait_poll``) wait for the state,
packet or event with a timeout, never for a fixed time. Without a capture,
``wait_packet`` waits instead for what the packet causes, and says so once.
"""

from __future__ import annotations

import dataclasses
import errno as errno_module
import math
import os
import pickle
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from . import _capture, _counters, _degraded, _hosts, _netns, _ports, _records, _states, _trace, _wire
from ._records import Call, Calling, Frames, Named, Note, Snapshot, Value
from ._vocab import Endpoint, State, short_repr

#: Names of the poll(2) events, for reporting what wait_poll saw.
POLL_EVENTS = {
    select.POLLIN: "POLLIN", select.POLLPRI: "POLLPRI", select.POLLOUT: "POLLOUT",
    select.POLLERR: "POLLERR", select.POLLHUP: "POLLHUP", select.POLLNVAL: "POLLNVAL",
    getattr(select, "POLLRDHUP", 0x2000): "POLLRDHUP",
}


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
        timeout = seconds(timeout)
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
        timeout = seconds(timeout)
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
        timeout = seconds(timeout)
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


def seconds(value: object, name: str = "timeout", zero: bool = True) -> float:
    """A timeout as a float, or a clear error: a finite number of seconds, not negative
    (and above 0 unless `zero`: a wait may just look, a run must have time to run)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be a finite number of seconds {'at least' if zero else 'above'} 0, "
                         f"not {value!r} (for example {name}=10)")
    return float(value)
