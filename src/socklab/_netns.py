"""Entering a private network namespace, and finding out whether we may.

Theory of operation
-------------------
A scenario runs in a forked child. Before the scenario's first call the child
moves itself into a fresh network namespace, so the only sockets and packets it
can see are its own:

* as root: ``unshare(CLONE_NEWNET)``;
* as anyone else (or as a root that lacks CAP_SYS_ADMIN, as in a container):
  ``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` and a uid/gid map that makes the
  caller root *inside* the new user namespace. That root owns the new network
  namespace, so it may bring ``lo`` up and open packet sockets on it.

A namespace cannot be left once entered, and some kernels let ``unshare``
succeed but then refuse what comes next (Ubuntu 24.04's AppArmor policy strips
the capabilities of an unprivileged user namespace). So the parent first asks a
throw-away child to try the whole dance (:func:`probe`), once per process, and
the scenario's child only does what the probe proved possible. When nothing
works the run goes on in the current namespace and says so (see ``Isolation``).

Inside the namespace the ephemeral port range is narrowed to two ports, so the
client side of a scenario gets port 50000 in every run: the kernel picks the
even port of a two-port range first (``__inet_hash_connect``), which makes two
builds print the same trace.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import os
import socket
import struct

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

#: The ephemeral ports a scenario's connecting sockets get, in this order.
EPHEMERAL_PORTS = (50000, 50001)

_libc = ctypes.CDLL(None, use_errno=True)


@dataclasses.dataclass(frozen=True)
class Isolation:
    """How a run was isolated from the host, and what it could observe."""

    mode: str  #: "netns", "userns+netns" or "none"
    capture: bool  #: whether packets could be captured
    reason: str = ""  #: why isolation or capture is missing ("" when complete)
    fix: str = ""  #: what the reader can do about it

    @property
    def private(self) -> bool:
        """Whether the run had a network namespace of its own."""
        return self.mode != "none"

    def describe(self) -> str:
        """One sentence: where the run ran, whether it was captured, and what is missing and why."""
        where = {
            "netns": "a private network namespace (root)",
            "userns+netns": "a private user and network namespace (unprivileged)",
            "none": "the host's own network namespace (NOT isolated)",
        }[self.mode]
        text = f"ran in {where}; packet capture {'on' if self.capture else 'OFF'}"
        if self.reason:
            text += f". Missing: {self.reason}. Fix: {self.fix}"
        return text


def unshare(flags: int) -> None:
    """Call unshare(2); raise OSError with the errno on failure."""
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter_user_and_net(uid: int, gid: int) -> None:
    """unshare(CLONE_NEWUSER|CLONE_NEWNET) and map uid/gid to root inside."""
    unshare(CLONE_NEWUSER | CLONE_NEWNET)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def set_link_up(name: str = "lo") -> None:
    """Bring an interface up with the SIOCSIFFLAGS ioctl (what `ip link set up` does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sh14x", name.encode(), 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh14x", name.encode(), flags | IFF_UP))


def fix_ephemeral_ports() -> None:
    low, high = EPHEMERAL_PORTS
    _write("/proc/sys/net/ipv4/ip_local_port_range", f"{low} {high}")


def enter(mode: str) -> None:
    """In the current (child) process: enter the namespaces `mode` names and set them up."""
    if mode == "netns":
        unshare(CLONE_NEWNET)
    elif mode == "userns+netns":
        enter_user_and_net(os.geteuid(), os.getegid())
    elif mode == "none":
        return
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown isolation mode {mode!r}")
    set_link_up("lo")
    fix_ephemeral_ports()


def can_capture() -> tuple[bool, str]:
    """Whether this process may open an AF_PACKET socket; (ok, reason)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()  # CAP_NET_RAW is checked at creation
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, str(e.errno))
        return False, f"opening a packet socket failed: {name} ({e.strerror})"
    return True, ""


def _probe_child(mode: str, w: int) -> None:
    """In a child process: enter `mode`, test capture, write the verdict to `w`. Never returns."""
    code = 0
    try:
        try:
            enter(mode)
        except OSError as e:
            msg = f"0\0{errno.errorcode.get(e.errno or 0, str(e.errno))} ({e.strerror})"
        else:
            ok, why = can_capture()
            msg = f"1{int(ok)}\0{why}"
        os.write(w, msg.encode())
    except BaseException:  # noqa: BLE001 - a child must not return
        code = 1
    finally:
        os._exit(code)


def _try_in_child(mode: str) -> tuple[bool, bool, str]:
    """In a child process enter `mode` and test capture. Returns (entered, capture, reason)."""
    from . import _spawn

    r, w = os.pipe()
    pid = _spawn.start(_probe_child, (mode,), w)  # fork, or spawn if this process has threads
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read().decode()
    os.waitpid(pid, 0)
    if not data:
        return False, False, "the probe process died"
    head, _, reason = data.partition("\0")
    if head[0] == "0":
        return False, False, reason
    return True, head[1] == "1", reason


# What to tell the reader, by what failed.
FIX_NAMESPACES = (
    "run as root, or allow unprivileged user namespaces "
    "(Ubuntu 24.04: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0; "
    "Debian: sysctl kernel.unprivileged_userns_clone=1; Docker: --cap-add SYS_ADMIN "
    "or --security-opt seccomp=unconfined)"
)
FIX_CAPTURE = "run as root (CAP_NET_RAW), or allow user namespaces so socklab can capture inside its own"

_probe_cache: Isolation | None = None


def probe(refresh: bool = False) -> Isolation:
    """Find the best isolation this machine allows (cached per process)."""
    global _probe_cache
    if _probe_cache is not None and not refresh:
        return _probe_cache
    reasons = []
    modes = ["netns", "userns+netns"] if os.geteuid() == 0 else ["userns+netns"]
    result = None
    for mode in modes:
        entered, capture, reason = _try_in_child(mode)
        if entered:
            result = Isolation(mode, capture, "" if capture else reason, "" if capture else FIX_CAPTURE)
            break
        reasons.append(f"{mode}: {reason}")
    if result is None:
        capture, why = can_capture()
        missing = "network namespaces refused (" + "; ".join(reasons) + ")"
        if not capture:
            missing += f"; packet capture refused ({why})"
        result = Isolation("none", capture, missing, FIX_NAMESPACES)
    _probe_cache = result
    return result
