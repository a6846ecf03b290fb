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
sends the frames, closes the capture without waiting for its RCU grace period
(``_capture.close_unwaited``) and leaves with ``os._exit``: a forked child must
never return into the caller's code (in a docs build, that would be a second
Sphinx). The children's code is in ``_supervisor``; what the scenario is given
is ``_lab.Lab``.

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

import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from . import _capture, _hosts, _kernel, _netns, _records, _spawn
from ._lab import Lab, seconds
from ._records import Exited, Failed, Finished
from ._run import Run
from ._supervisor import LENGTH, STOP_GRACE, NamespaceReady, ScenarioEnded, WireFailed, supervise

DEFAULT_TIMEOUT = 10.0


class ScenarioError(RuntimeError):
    """The scenario raised; the message carries the child's traceback."""


class ScenarioTimeout(ScenarioError):
    """The scenario did not finish in time and was killed."""


class ScenarioKilled(ScenarioError):
    """The scenario's process was killed by a signal it did not expect."""


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
    timeout = seconds(timeout, zero=False)
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
    pid = _spawn.start(supervise, (scenario, isolation, parent, watching, wire), w)
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
    exited = next((rec for rec in records if isinstance(rec, ScenarioEnded)), None)
    wire_failed = next((rec for rec in records if isinstance(rec, WireFailed)), None)
    records = [rec for rec in records if not isinstance(rec, ScenarioEnded | NamespaceReady | WireFailed)]
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
        if isinstance(record, NamespaceReady):
            self.recorder.watch(record.inode, hosts=record.hosts or None)
            self.watching = self.watched = True
            os.kill(self.supervisor, signal.SIGUSR1)
        elif isinstance(record, ScenarioEnded) and self.watched:
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
        while len(buffer) - start >= LENGTH.size:
            (size,) = LENGTH.unpack_from(buffer, start)
            end = start + LENGTH.size + size
            if len(buffer) < end:
                break
            with memoryview(buffer) as view:
                self.records.append(pickle.loads(view[start + LENGTH.size : end]))
            start = end
        if start:
            del buffer[:start]

