"""The tests' own minimal harness: a scenario in a forked child in a fresh network namespace.

Until the recorder is part of ``socklab.run``, the kernel and counter tests drive
a child themselves, in the order the run will:

1. the child enters its namespace (``_netns.enter``), makes its hosts' namespaces if
   asked (`hosts`), and says it is ready, with the hosts' {inode: name};
2. the parent starts watching the child's namespace inode (and the hosts'), then says go;
3. the child runs the scenario, causes the end marker, and sends back the
   scenario's return value (or its traceback), pickled;
4. the parent stops watching (reading every event up to the marker), and only
   then lets the child exit: the namespace's inode must not be recycled while it
   is watched.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import select
import signal
import struct
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from socklab import _kernel, _netns


@dataclasses.dataclass
class Outcome:
    result: Any  #: what the scenario returned
    events: list | None  #: the kernel events, or None when no recorder watched
    inode: int  #: the child's network namespace inode


def _read_exactly(fd: int, n: int, deadline: float) -> bytes:
    import time

    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("the scenario's child did not answer in time")
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise RuntimeError("the scenario's child died")
        data += chunk
    return data


def run(scenario: Callable[[], Any], recorder: _kernel.Recorder | None = None, mode: str = "netns",
        marker: bool = True, timeout: float = 20.0,
        hosts: Callable[[], Mapping[int, str]] | None = None) -> Outcome:
    """Run `scenario` in a child in a fresh namespace; record its kernel events with `recorder` if given.

    `hosts`, called in the child before it is watched, makes further namespaces (kept alive by the
    child until the end) and returns {inode: host name} of those to watch with the child's own.
    """
    import time

    to_parent, from_child = os.pipe()
    from_parent, to_child = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return
        code = 0
        try:
            os.close(to_parent)
            os.close(to_child)
            _netns.enter(mode)
            # These tests name the client's port (50000): narrow this private namespace's range to it,
            # as socklab's runs do per socket (socklab._ports), which this bare harness does not install.
            with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
                f.write("50000 50001")
            named = pickle.dumps(dict(hosts()) if hosts else {})
            os.write(from_child, b"R" + struct.pack("<I", len(named)) + named)
            os.read(from_parent, 1)
            try:
                payload = pickle.dumps((True, scenario()))
            except BaseException:  # noqa: BLE001 - reported to the parent
                payload = pickle.dumps((False, traceback.format_exc()))
            if marker:
                _kernel.end_marker()
            os.write(from_child, struct.pack("<I", len(payload)) + payload)
            os.read(from_parent, 1)
        except BaseException:  # noqa: BLE001 - a forked child must not return
            code = 1
        finally:
            os._exit(code)
    os.close(from_child)
    os.close(from_parent)
    deadline = time.monotonic() + timeout
    events = None
    try:
        _read_exactly(to_parent, 1, deadline)
        named = pickle.loads(_read_exactly(to_parent, struct.unpack("<I", _read_exactly(to_parent, 4, deadline))[0],
                                           deadline))
        inode = _kernel.netns_inode(pid)
        if recorder is not None:
            if named:
                recorder.watch(inode, hosts=named)
            else:
                recorder.watch(inode)
        os.write(to_child, b"G")
        size = struct.unpack("<I", _read_exactly(to_parent, 4, deadline))[0]
        ok, result = pickle.loads(_read_exactly(to_parent, size, deadline))
        if recorder is not None:
            events = recorder.stop()
        os.write(to_child, b"B")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        if recorder is not None:
            recorder.cancel()
        raise
    finally:
        os.close(to_parent)
        os.close(to_child)
        os.waitpid(pid, 0)
    if not ok:
        raise RuntimeError(f"the scenario failed in its child:\n{result}")
    return Outcome(result, events, inode)
