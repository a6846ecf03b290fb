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

Nothing in the namespace is changed but ``lo``, which is brought up: no
sysctl is written, so a read-only ``/proc/sys`` (as Docker mounts it) does not
matter. Reproducible client ports come from ``_ports`` instead.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import os
import socket
import struct

from . import _capture

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

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


def prctl(option: int, value: int) -> None:
    """Call prctl(2) with one argument; raise OSError with the errno on failure."""
    if _libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
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


def can_capture() -> tuple[bool, str]:
    """Whether this process may open an AF_PACKET socket; (ok, reason)."""
    try:
        _capture.close_unwaited(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))  # CAP_NET_RAW: at creation
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
_diagnosis_cache: Diagnosis | None = None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _has_capability(bit: int) -> bool:
    """Whether this process has a capability in its effective set (/proc/self/status)."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_NET_RAW, CAP_SYS_ADMIN = 13, 21


def namespace_fix(refusals: dict[str, str]) -> str:
    """What to do about refused namespaces, from what this machine says about itself."""
    fixes = []
    if _read("/proc/sys/user/max_user_namespaces") == "0" or any("ENOSPC" in r for r in refusals.values()):
        fixes.append("user namespaces are limited to none here (user.max_user_namespaces is 0): "
                     "sudo sysctl -w user.max_user_namespaces=15000 (in a container, where it is created)")
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        fixes.append("sudo sysctl -w kernel.unprivileged_userns_clone=1")
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        fixes.append("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04's AppArmor)")
    seccomp = next((line.split()[1] for line in (_read("/proc/self/status") or "").splitlines()
                    if line.startswith("Seccomp:")), "0")
    if seccomp == "2" and any("EPERM" in r for r in refusals.values()):
        fixes.append("a seccomp filter refuses unshare(2) (Docker's default profile does): "
                     "docker run --security-opt seccomp=unconfined, or a profile that allows unshare")
    if os.geteuid() == 0 and not _has_capability(CAP_SYS_ADMIN):
        fixes.append("root here lacks CAP_SYS_ADMIN (a container?): docker run --cap-add SYS_ADMIN")
    if not fixes:
        fixes.append(FIX_NAMESPACES if os.geteuid() != 0 else FIX_NAMESPACES.removeprefix("run as root, or "))
    return "; or ".join(fixes)


def capture_fix(mode: str) -> str:
    """What to do about refused capture, for who we are and where the run happens."""
    if os.geteuid() == 0 or mode == "netns":
        return ("CAP_NET_RAW was dropped from this root process (capsh --drop, docker --cap-drop): "
                "give it back (docker run --cap-add NET_RAW), or allow user namespaces, inside which "
                "socklab captures with capabilities of its own")
    if mode == "none":
        return "allow user namespaces (see the fix for namespaces), inside which socklab captures; or run as root"
    return FIX_CAPTURE


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """What ``python -m socklab check`` reports: each capability, why it is missing, the fix."""

    mode: str
    capture: bool
    namespace_reason: str = ""
    namespace_fix: str = ""
    capture_reason: str = ""
    capture_fix: str = ""

    def isolation(self) -> Isolation:
        reason = "; ".join(r for r in (self.namespace_reason, self.capture_reason) if r)
        fix = "; ".join(dict.fromkeys(f for f in (self.namespace_fix, self.capture_fix) if f))
        return Isolation(self.mode, self.capture, reason, fix)


def diagnose(refresh: bool = False) -> Diagnosis:
    """Try each isolation, best first, in throw-away children (cached per process).

    A mode that isolates and captures wins; a root that may not capture (CAP_NET_RAW
    dropped) also tries a user namespace, which brings capabilities of its own.
    """
    global _diagnosis_cache
    if _diagnosis_cache is not None and not refresh:
        return _diagnosis_cache
    refusals: dict[str, str] = {}
    modes = ["netns", "userns+netns"] if os.geteuid() == 0 else ["userns+netns"]
    fallback: tuple[str, str] | None = None  # a mode that isolates without capture, and why
    result = None
    for mode in modes:
        entered, capture, reason = _try_in_child(mode)
        if entered and capture:
            result = Diagnosis(mode, True)
            break
        if entered:
            fallback = fallback or (mode, reason)
        else:
            refusals[mode] = reason
    if result is None and fallback is not None:
        mode, reason = fallback
        result = Diagnosis(mode, False, capture_reason=f"packet capture refused ({reason})",
                           capture_fix=capture_fix(mode))
    if result is None:
        capture, why = can_capture()
        result = Diagnosis(
            "none", capture,
            "network namespaces refused (" + "; ".join(f"{m}: {r}" for m, r in refusals.items()) + ")",
            namespace_fix(refusals),
            "" if capture else f"packet capture refused ({why})",
            "" if capture else capture_fix("none"))
    _diagnosis_cache = result
    return result


def probe(refresh: bool = False) -> Isolation:
    """Find the best isolation this machine allows (cached per process)."""
    global _probe_cache
    if _probe_cache is not None and not refresh:
        return _probe_cache
    _probe_cache = diagnose(refresh=True).isolation()
    return _probe_cache
