"""start(): a child process for a scenario, without forking a threaded parent.

Theory of operation
-------------------
Every scenario (and the isolation probe) runs in a child process, for the
reasons ``_runner`` gives. ``fork()`` copies only the calling thread: when another
thread of the parent holds a lock at that moment (malloc's, the import lock, a
logging handler's), the child can deadlock on it. Python 3.12 and later warn
about exactly this (``DeprecationWarning: This process ... is multi-threaded,
use of fork() may lead to deadlocks in the child``), and a Jupyter kernel, or
any program with a thread pool, is multi-threaded before socklab runs.

So ``start`` counts the threads Python runs (``threading.active_count()``,
the count Python's warning is about):

* one thread (a script, ``python -m socklab``, pytest, the docs build):
  ``os.fork()``. The cheapest way (a few ms), and the child sees the caller's
  memory exactly.
* more than one: ``os.posix_spawn`` of a fresh interpreter, which reads the
  function and its arguments from a pipe and calls it as the forked child
  would, with the same record pipe on the same terms. The function is pickled
  with ``cloudpickle``, which carries a function defined in ``__main__`` (a
  script, a notebook cell, a sphinx-gallery example run in a fake
  ``__main__``) by value, with the globals it uses; importable functions travel
  by reference, and the child gets the caller's ``sys.path`` to import them.
  Costs an interpreter start and socklab's import; the limit is that what the
  scenario takes from the caller's globals must pickle (create sockets and
  locks inside the scenario, as every example does).

Why not a fork server (a helper forked once, early, while single-threaded, as
multiprocessing's ``forkserver``): socklab cannot make itself imported early
enough (a Jupyter kernel has threads before any user code runs), and a fork
server forks its own memory, not the caller's, so it needs the scenario
pickled just the same, plus a long-lived process to manage. Why not
multiprocessing's ``spawn``: it pickles with plain ``pickle``, which refers to
a ``__main__`` function by name, and a fresh interpreter has no such name.

Threads that a C library starts on its own are not counted, as Python does
not count them either: OpenBLAS, which numpy (and so matplotlib) loads, starts
one at import, and it resets its own state across a fork (``pthread_atfork``),
as glibc's malloc does. Counting them would spawn every run after the first
figure (80-170 ms instead of a few ms, measured here) for no hazard known.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

#: The descriptor number the spawned child finds its record pipe at.
CHILD_FD = 3

_BOOT = """\
import os, pickle, sys
data = bytearray()
while chunk := os.read(0, 1 << 16):
    data += chunk
path, payload = pickle.loads(data)
sys.path[:] = path
from socklab._spawn import _call_in_child
_call_in_child(payload)
"""


def threads() -> int:
    """How many Python threads this process runs (the main thread included)."""
    return threading.active_count()


def start(target: Callable[..., Any], args: tuple[Any, ...], fd: int) -> int:
    """Run ``target(*args, fd)`` in a new child process and return its pid.

    `target` must end the process with ``os._exit`` (a forked child must never
    return into the caller's code); `fd` is the write end of the pipe the child
    reports on, and is the only descriptor the child is sure to share.
    """
    if threads() == 1:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child ends in os._exit
            try:
                target(*args, fd)
            finally:
                os._exit(70)
        return pid
    return _spawn(target, args, fd)


def _spawn(target: Callable[..., Any], args: tuple[Any, ...], fd: int) -> int:
    import cloudpickle

    payload = pickle.dumps((list(sys.path), cloudpickle.dumps((target, args))))
    r, w = os.pipe()
    # Descriptors numbered 10 and up, so that neither can already sit at 0 or CHILD_FD: a
    # dup2 onto itself would keep close-on-exec set and the child would not get it.
    fds = [fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)]
    try:
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", _BOOT], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, fds[0], 0),
                                           (os.POSIX_SPAWN_DUP2, fds[1], CHILD_FD)])
    finally:
        for n in (r, *fds):
            os.close(n)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(w, view):]
    except BrokenPipeError:
        pass  # the child died before reading: the caller sees a child that never reported
    finally:
        os.close(w)
    return pid


def _call_in_child(payload: bytes) -> None:  # pragma: no cover - runs in the spawned child
    """The spawned child's body: call the function as a forked child would."""
    try:
        target, args = pickle.loads(payload)
        target(*args, CHILD_FD)
    finally:
        os._exit(70)
