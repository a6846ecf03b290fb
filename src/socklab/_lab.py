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
spawned interpreter could not import. A parent with threads is not forked:
``_spawn`` starts a fresh interpreter instead and hands it the scenario by
value (see its theory of operation).
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

from . import _capture, _netns, _spawn, _states, _trace
from ._records import Call, Calling, Failed, Finished, Frames, Named, Note, Snapshot, Started
from ._run import Run

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


def _address(sock: socket.socket, peer: bool) -> str:
    try:
        addr = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return ""
    if sock.family == socket.AF_INET6:
        return f"[{addr[0]}]:{addr[1]}"
    if sock.family == socket.AF_INET:
        return f"{addr[0]}:{addr[1]}"
    return ""


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
        self._own: set[tuple[str, str]] = set()
        self._seen: dict[int, tuple[str, str]] = {}  # id(socket) -> (local, peer) last seen open

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

    def call(self, fn: Callable[..., Any], *args: Any, label: str | None = None, **kwargs: Any) -> Any:
        """Call ``fn(*args)``, record its return value or errno, and return the value.

        An ``OSError`` is recorded by its errno name (``EPIPE``) and not raised:
        the scenario goes on, and ``None`` is returned. The call itself stays in
        the scenario's text: ``lab.call(server.send, b"a", socket.MSG_NOSIGNAL)``.
        """
        owner = getattr(fn, "__self__", None)
        local, peer, listening, inode = "", "", False, 0
        if isinstance(owner, socket.socket) and owner.fileno() >= 0:
            local, peer, inode = self._identify(owner)
            listening = bool(owner.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        label = label or str(getattr(fn, "__name__", repr(fn)))
        # Announce the call first, so a signal that kills us during it is attributed.
        self._emit(Calling(label))
        try:
            value = fn(*args, **kwargs)
        except OSError as e:
            name = errno_module.errorcode.get(e.errno or 0, str(e.errno))
            self._emit(Call(label, time.time_ns(), None, name, local, peer, listening, inode))
            return None
        self._emit(Call(label, time.time_ns(), _short_repr(value), None, local, peer, listening, inode))
        return value

    def name(self, sock: socket.socket, name: str) -> None:
        """Call `sock` `name` in tables, traces and claims (instead of client/server)."""
        local, peer, inode = self._identify(sock)
        self._emit(Named(name, inode, local, peer))

    def _identify(self, sock: socket.socket) -> tuple[str, str, int]:
        """(local, peer, inode) of an open socket; its addresses are remembered for
        ``wait_state`` once the socket is closed."""
        local, peer = _address(sock, False), _address(sock, True)
        if peer:
            self._seen[id(sock)] = (local, peer)
        return local, peer, os.fstat(sock.fileno()).st_ino

    def note(self, text: str) -> None:
        """Add a line of explanation to the run's output."""
        self._emit(Note(text))

    # -- waiting -------------------------------------------------------------
    def wait_state(self, sock: socket.socket | tuple[str, str], state: str | None,
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
        key: tuple[str, str] = ("", "")
        if not isinstance(sock, socket.socket):
            key = sock
        else:
            if sock.fileno() >= 0:
                local, peer, inode = self._identify(sock)
                key = (local, peer or "*")
            elif id(sock) in self._seen:  # closed: it lives on in the kernel under its addresses
                key = self._seen[id(sock)]
            else:
                raise ValueError("this socket was closed before socklab saw its addresses (pass it to "
                                 "lab.call or lab.name while open, or give (local, peer) strings)")
        want = _states.kernel_state(state) if state else None

        def current() -> str | None:
            for row in _states.snapshot(unix=False):
                if (row.inode == inode) if inode else (row.local == key[0] and row.peer == key[1]):
                    return row.state
            return None

        seen = _wait(lambda: (s := current()) == want, timeout)
        if not seen:
            raise TimeoutError(
                f"socket {key[0]} -> {key[1]} did not reach {want or 'gone'} within {timeout}s "
                f"(it is {current() or 'gone'})")

    def wait_packet(self, flags: str, *, sport: int | None = None, dport: int | None = None,
                    after: int = 0, timeout: float = 2.0) -> None:
        """Wait until a TCP packet with exactly these tcpdump flags (``"R"``, ``"F."``) is captured.

        `sport`/`dport` narrow it to a direction; `after` skips that many earlier
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
            summary = _capture.tcp_summary(frame.data)
            if summary is None:
                return False
            s, d, bits = summary
            if _trace.flag_text(bits) != wanted or (sport and s != sport) or (dport and d != dport):
                return False
            count += 1
            return count > after

        try:
            self._capture.wait(matches, timeout)
        except TimeoutError:
            raise TimeoutError(f"no [{flags}] packet (sport={sport}, dport={dport}) within {timeout}s") from None

    def wait_poll(self, sock: socket.socket, events: int, timeout: float = 2.0,
                  label: str | None = None) -> int:
        """poll(2) one socket for `events`; record and return revents (0 on timeout)."""
        p = select.poll()
        p.register(sock, events)
        result = p.poll(timeout * 1000)
        revents = result[0][1] if result else 0
        local, peer, inode = self._identify(sock)
        self._emit(Call(label or f"poll({poll_names(events)})", time.time_ns(), poll_names(revents),
                        None, local, peer, False, inode))
        return revents


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    pid = _spawn.start(_child, (scenario, isolation), w)  # fork, or spawn if this process has threads
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
    run_ = Run(name, records)
    last = run_.last_step()
    if timed_out:
        raise ScenarioTimeout(f"scenario {name!r} did not finish within {timeout}s and was killed; "
                              f"its last recorded step was: {last}")
    failed = next((rec for rec in records if isinstance(rec, Failed)), None)
    if failed is not None:
        raise ScenarioError(f"scenario {name!r} raised {failed.kind}: {failed.message}\n\n"
                            f"Traceback in the scenario's process:\n{failed.traceback}")
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        run_.killed_by = sig
        if not allow_signals:
            raise ScenarioKilled(f"scenario {name!r} was killed by {sig} during: {last}. "
                                 "Pass allow_signals=True to run() if the page means to show it.")
    elif not any(isinstance(rec, Finished) for rec in records):
        raise ScenarioError(f"scenario {name!r} ended without reporting (exit status "
                            f"{os.waitstatus_to_exitcode(status)}); last step: {last}")
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
