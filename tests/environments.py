"""Machines that refuse socklab something, made for real: ``python environments.py MODE CMD...``.

* ``refuse-unshare``: a seccomp filter makes unshare(2), setns(2) and clone(2) with
  namespace flags fail with EPERM, as Docker's default profile does. Needs the
  ``seccomp`` module (Debian's python3-seccomp, for /usr/bin/python3).
* ``no-user-namespaces``: run CMD as uid/gid 65534 inside a user namespace whose own
  ``user.max_user_namespaces`` is 0 (needs root).

The environment's rules are inherited by CMD, which replaces this process (execv).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID = 0x10000000, 0x40000000, 0x00020000, 0x20000000
NOBODY = 65534


def refuse_unshare(command: list[str]) -> None:
    import seccomp  # Debian's python3-seccomp

    refuse = seccomp.ERRNO(errno.EPERM)
    flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    flt.add_rule(refuse, "unshare")
    flt.add_rule(refuse, "setns")
    for flag in (CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID):
        flt.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    flt.load()
    os.execv(command[0], command)


def no_user_namespaces(command: list[str]) -> None:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWUSER) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
            os.write(ready_w, b"1")
            os.read(go_r, 1)  # the parent has mapped our ids: we are root in the namespace
            with open("/proc/sys/user/max_user_namespaces", "w") as f:
                f.write("0")
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.execv(command[0], command)
        finally:
            os._exit(127)
    os.read(ready_r, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write("0 0 65536")
    os.write(go_w, b"1")
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    mode, *cmd = sys.argv[1:]
    {"refuse-unshare": refuse_unshare, "no-user-namespaces": no_user_namespaces}[mode](cmd)
