"""The child's side of a run: the supervisor and the scenario's process.

See ``_runner`` for the whole lifecycle. The supervisor (forked, or spawned
from a threaded parent: ``_spawn``) makes itself a process group leader and the
subreaper of everything below it, enters the run's isolation (``_netns``),
builds the two hosts of a wired run (``_hosts``), and forks the scenario's
process, which opens the capture, calls ``scenario(lab)`` and sends its
records as they happen. When the scenario's process has ended (or the parent
died, or asked it to stop), the supervisor kills and reaps whatever the
scenario left running, names each in a note, and sends the wait status last
(``ScenarioEnded``).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import platform
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import _capture, _counters, _degraded, _hosts, _kernel, _netns, _ports, _records
from ._lab import Lab
from ._records import Failed, Finished, Note, Started
from ._vocab import short_repr

LENGTH = struct.Struct("!I")

#: How long the supervisor gets, after the timeout, to end the scenario and report.
STOP_GRACE = 5.0


class _Stop(Exception):
    """The parent asked the supervisor to stop the run (SIGTERM at the timeout)."""


@dataclasses.dataclass(frozen=True)
class ScenarioEnded:
    """The supervisor's last record: the scenario process's wait status."""

    status: int
    stopped: str  #: "" when the scenario ended by itself, else why it was killed


@dataclasses.dataclass(frozen=True)
class WireFailed:
    """The supervisor could not build the run's two hosts (``_hosts.WireUnavailable``, ``SysctlError``)."""

    kind: str
    message: str


@dataclasses.dataclass(frozen=True)
class NamespaceReady:
    """The supervisor is in the run's namespace (its inode), and waits for the parent's go.
    In a two-hosts run, the hosts' namespaces too: {inode: host name}."""

    inode: int
    hosts: dict[int, str] = dataclasses.field(default_factory=dict)


def supervise(scenario: Callable[[Lab], Any], isolation: _netns.Isolation, parent: int, events: bool,
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
                write_record(fd, WireFailed(type(e).__name__, str(e)))
                write_record(fd, ScenarioEnded(0, ""))
                os._exit(0)
        if events:
            write_record(fd, NamespaceReady(os.stat("/proc/self/ns/net").st_ino,
                                              net.inodes() if net is not None else {}))
            if signal.sigtimedwait({signal.SIGUSR1}, STOP_GRACE) is None:
                os._exit(0)  # the parent did not answer: it is gone
        pid = os.fork()
        if pid == 0:
            if events:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
            _scenario_process(scenario, isolation, fd, me, previous_sigterm, net)
        if net is not None and net.link is not None:  # else our exit would wait for its grace period
            net.link.forget()
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
            write_record(fd, Note(text))
        if events:
            _kernel.end_marker()  # the last event of the run, caused in its namespace
        write_record(fd, ScenarioEnded(status, stopped))
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
            write_record(fd, record)

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


def write_record(fd: int, record: object) -> None:
    data = pickle.dumps(record)
    view = memoryview(LENGTH.pack(len(data)) + data)
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


