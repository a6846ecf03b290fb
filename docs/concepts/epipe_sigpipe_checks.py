"""SIGPIPE: which failed calls raise it, MSG_NOSIGNAL, and Python's defaults.

Drawn for epipe-econnreset-sigpipe.md while the docs build: the ladder of a
send() after the process's own shutdown(SHUT_WR), with MSG_NOSIGNAL. The other
runs are not drawn: with SIGPIPE at its default action they check which calls
kill the process. Run it by hand with ``python epipe_sigpipe_checks.py``.
"""

import errno
import os
import signal
import socket
import struct
import subprocess
import tempfile

import matplotlib.pyplot as plt

import socklab

PORT = 4321


def connected():
    listener = socket.create_server(("127.0.0.1", PORT))
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def own_shutdown(lab, call):
    listener, client, server = connected()
    lab.call(server.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the FIN
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    call(lab, server)
    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the client's FIN


def reset_then_send(lab):
    listener, client, server = connected()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    lab.wait_packet("R.", dport=PORT)
    lab.wait_state(server, None)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    lab.call(server.send, b"a", label="send #1")
    lab.call(server.send, b"a", label="send #2")


nosignal = socklab.run(
    lambda lab: own_shutdown(lab, lambda lab, s: lab.call(s.send, b"a", socket.MSG_NOSIGNAL, label="send")),
    name="own shutdown, MSG_NOSIGNAL",
)
nosignal.expect(
    calls={"server: send": "EPIPE"},
    killed_by=None,
    flow=["client [S]", "server [S.]", "client [.]", "server [F.]", "client [.]", "client [F.]", "server [.]"],
)
for name, call in (
    ("send", lambda lab, s: lab.call(s.send, b"a", label="send")),
    ("write", lambda lab, s: lab.call(os.write, s.fileno(), b"a", label="write")),
):
    killed = socklab.run(lambda lab, call=call: own_shutdown(lab, call), name=name, allow_signals=True)
    killed.expect(killed_by="SIGPIPE")
    assert not any(c.label == name for c in killed.calls), f"{name} returned"
reset = socklab.run(reset_then_send, allow_signals=True)
reset.expect(calls={"send #1": "ECONNRESET"}, killed_by="SIGPIPE")
assert [c.label for c in reset.calls] == ["send #1"]
assert type(OSError(errno.EPIPE, "")) is BrokenPipeError
assert type(OSError(errno.ECONNRESET, "")) is ConnectionResetError
assert issubclass(BrokenPipeError, ConnectionError) and issubclass(ConnectionResetError, ConnectionError)

# Which programs that Python starts inherit its ignored SIGPIPE: each reads its own
# /proc/self/status ("SigIgn", a mask with bit SIGPIPE - 1 set when it is ignored).
GREP = ["/bin/grep", "SigIgn", "/proc/self/status"]


def ignored(status: str) -> bool:
    return bool(int(status.split()[1], 16) & (1 << (signal.SIGPIPE - 1)))


def by_posix_spawn() -> str:
    r, w = os.pipe()
    pid = os.posix_spawn(GREP[0], GREP, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def by_fork_and_exec() -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(w, 1)
            os.execv(GREP[0], GREP)
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def by_os_system() -> str:
    with tempfile.NamedTemporaryFile("r") as out:
        os.system(f"{' '.join(GREP)} > {out.name}")
        return out.read()


INHERITED = {
    "subprocess.run (restore_signals=True, the default)": (
        lambda: subprocess.run(GREP, capture_output=True, text=True).stdout, False),
    "subprocess.run(restore_signals=False)": (
        lambda: subprocess.run(GREP, capture_output=True, text=True, restore_signals=False).stdout, True),
    "os.system": (by_os_system, True),
    "os.posix_spawn": (by_posix_spawn, True),
    "os.fork and os.execv": (by_fork_and_exec, True),
}
assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python's own start-up disposition
for how, (start, says_ignored) in INHERITED.items():
    status = start()
    assert ignored(status) is says_ignored, (
        f"the page says a program started by {how} has SIGPIPE {'ignored' if says_ignored else 'at its default'}; "
        f"its {status.strip()!r} says otherwise")
nosignal.ladder()

if __name__ == "__main__":
    plt.show()
