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
# a child started by Python has SIGPIPE back at its default action
status = subprocess.run(["grep", "SigIgn", "/proc/self/status"], capture_output=True, text=True)
assert not int(status.stdout.split()[1], 16) & (1 << (signal.SIGPIPE - 1)), status.stdout
nosignal.ladder()

if __name__ == "__main__":
    plt.show()
