"""run(): a scenario in a forked child, observed, with its records sent home.

Theory of operation
-------------------
``run(scenario)`` forks. The child enters the isolation the parent's probe
found possible (``_netns``), opens the capture (``_capture``), then calls
``scenario(lab)``. Everything the scenario records through ``lab`` is pickled
onto a pipe *as it happens*, so a child that is killed (a hang past the
timeout, ``SIGPIPE`` at its default action) still leaves the parent all it saw
up to that moment. At the end the child flushes the capture, sends the frames
and leaves with ``os._exit``: a forked child must never return into the
caller's code (in a docs build, that would be a second Sphinx).

The parent reads the pipe until end-of-file or the deadline, kills the child
on a timeout, always reaps it, and turns the records into a ``Run``. The
parent's signal handlers, working directory and namespaces are never touched:
everything that changes them happens in the child.

Why fork and not multiprocessing: the scenario is a function defined in an
example script, which sphinx-gallery executes in a fake ``__main__`` that a
spawned interpreter could not import.
"""

from __future__ import annotations

import errno as errno_module
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

from . import _capture, _netns, _records, _states, _trace
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
                 isolation: _netns.Isolation) -> None:
        self._send = send
        self._capture = capture
        self._frames_sent = 0
        self.isolation = isolation
        self._own: set[tuple[Endpoint, Endpoint]] = set()
        self._seen: dict[int, tuple[Endpoint, Endpoint]] = {}  # id(socket) -> (local, peer) last seen open

    # -- recording -----------------------------------------------------------
    def _emit(self, record: object) -> None:
        self._send_frames()
        self._send(record)

    def finish(self) -> None:
        """End of the scenario: flush the capture and send the frames not sent yet."""
        if self._capture is not None:
            self._capture.flush()
        self._send_frames()

    def _send_frames(self) -> None:
        if self._capture is None:
            return
        self._capture.read_available()
        new = self._capture.frames[self._frames_sent :]
        if new:
            self._frames_sent += len(new)
            self._send(Frames(tuple((f.time_ns, f.data) for f in new)))

    def _rows(self) -> tuple[_states.SocketRow, ...]:
        rows = _states.snapshot()
        if self.isolation.private:
            return tuple(rows)
        return tuple(self._only_own(rows))

    def _only_own(self, rows: list[_states.SocketRow]) -> list[_states.SocketRow]:
        """Without a private namespace: keep the sockets this process owns or owned."""
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
        kept = []
        for row in rows:
            if row.inode in inodes:
                self._own.add((row.local, row.peer))
            if row.inode in inodes or (row.inode == 0 and (row.local, row.peer) in self._own):
                kept.append(row)
        return kept

    def snapshot(self, label: str) -> None:
        """Record the socket table now (what ``ss -tanx`` would print), under `label`."""
        self._emit(Snapshot(label, time.time_ns(), self._rows()))

    def call(self, fn: Callable[..., Any], *args: Any, label: str | None = None, by: str | None = None,
             **kwargs: Any) -> Any:
        """Call ``fn(*args)``, record its return value or errno, and return the value.

        An ``OSError`` is recorded by its errno name (``EPIPE``) and not raised:
        the scenario goes on, and ``None`` is returned. The call itself stays in
        the scenario's text: ``lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")``.
        Who made the call is the role of its socket (``server``), or `by`.
        """
        owner = getattr(fn, "__self__", None)
        ref = _records.SocketRef()
        if isinstance(owner, socket.socket) and owner.fileno() >= 0:
            ref = self._identify(owner)
        label = label or f"{getattr(fn, '__name__', repr(fn))}()"
        # Announce the call first, so a signal that kills us during it is attributed.
        self._emit(Calling(label))
        start = time.time_ns()
        try:
            value = fn(*args, **kwargs)
        except OSError as e:
            name = errno_module.errorcode.get(e.errno or 0, str(e.errno))
            self._emit(Call(label, start, time.time_ns(), None, None, name, ref, by))
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
        inode = 0
        key: tuple[Endpoint | None, Endpoint | None] = (None, None)
        if not isinstance(sock, socket.socket):
            key = (Endpoint.parse(sock[0]), Endpoint.parse(sock[1]))
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
            for row in _states.snapshot(unix=False):
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
        matches (wait for the second ``[.]``, say). Without capture this raises.
        The packet is captured as it leaves its sender: to show its effect on the
        receiver's state, follow with ``wait_state``.
        """
        if self._capture is None:
            raise RuntimeError(f"wait_packet needs packet capture, which this machine refused "
                               f"({self.isolation.reason}). Fix: {self.isolation.fix or _netns.FIX_CAPTURE}")
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

    def wait_poll(self, sock: socket.socket, events: int, timeout: float = 2.0,
                  label: str | None = None, by: str | None = None) -> int:
        """poll(2) one socket for `events`; record and return revents (0 on timeout).

        The call's recorded value is the names of the events (``"POLLIN|POLLHUP"``)."""
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


# -- the child ----------------------------------------------------------------

def _child(scenario: Callable[[Lab], Any], isolation: _netns.Isolation, fd: int) -> None:
    """Body of the forked child. Never returns."""
    code = 0

    def send(record: object) -> None:
        _write_all(fd, pickle.dumps(record))

    try:
        capture = None
        try:
            _netns.enter(isolation.mode)
            if isolation.capture:
                capture = _capture.Capture("lo")
        except OSError as e:  # the probe said yes, the child was refused
            isolation = _netns.Isolation("none", False, f"entering the namespace failed: {e}",
                                         _netns.FIX_NAMESPACES)
        send(Started(platform.release(), isolation.mode, capture is not None, isolation.reason,
                     isolation.fix, time.time_ns()))
        lab = Lab(send, capture, isolation)
        try:
            scenario(lab)
            lab.finish()
            send(Finished(time.time_ns()))
        except BaseException as e:  # noqa: BLE001 - report everything to the parent
            lab._send_frames()
            send(Failed(type(e).__name__, str(e), traceback.format_exc()))
    except BaseException:  # noqa: BLE001
        code = 70
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


# -- the parent ---------------------------------------------------------------

def run(scenario: Callable[[Lab], Any], *, name: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        allow_signals: bool = False) -> Run:
    """Run `scenario(lab)` in a private network namespace and return what it did.

    The scenario runs in a forked child; this returns a ``Run`` with the socket
    tables, calls, packets and notes, or raises ``ScenarioError`` (with the
    child's traceback), ``ScenarioTimeout`` after `timeout` seconds, or
    ``ScenarioKilled`` when a signal killed it (unless `allow_signals`, in
    which case the ``Run`` says which signal, in ``run.killed_by``).
    """
    if not callable(scenario):
        raise TypeError(f"run() needs a function taking a Lab, not {scenario!r}")
    name = name or str(getattr(scenario, "__name__", "scenario"))
    isolation = _netns.probe()
    _capture.keep_timestamping_on()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(scenario, isolation, w)
    os.close(w)
    records: list[object] = []
    timed_out = False
    try:
        timed_out = not _read_records(r, records, time.monotonic() + timeout)
    finally:
        os.close(r)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    killed = signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) and not timed_out else None
    code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None
    records.append(Exited(killed, code, timed_out))
    run_ = Run(name, records)
    last = run_.last_step()
    if timed_out:
        raise ScenarioTimeout(f"scenario {name!r} did not finish within {timeout}s and was killed; "
                              f"its last recorded step was: {last}")
    failed = next((rec for rec in records if isinstance(rec, Failed)), None)
    if failed is not None:
        raise ScenarioError(f"scenario {name!r} raised {failed.kind}: {failed.message}\n\n"
                            f"Traceback in the scenario's process:\n{failed.traceback}")
    if killed:
        if not allow_signals:
            raise ScenarioKilled(f"scenario {name!r} was killed by {killed} during: {last}. "
                                 "Pass allow_signals=True to run() if the page means to show it.")
    elif not any(isinstance(rec, Finished) for rec in records):
        raise ScenarioError(f"scenario {name!r} ended without reporting (exit status {code}); last step: {last}")
    return run_


def _read_records(fd: int, records: list[object], deadline: float) -> bool:
    """Read length-prefixed pickles until EOF (True) or the deadline (False)."""
    buffer = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return False
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return True
        buffer += chunk
        while len(buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer)
            if len(buffer) < _LENGTH.size + size:
                break
            records.append(pickle.loads(buffer[_LENGTH.size : _LENGTH.size + size]))
            buffer = buffer[_LENGTH.size + size :]
