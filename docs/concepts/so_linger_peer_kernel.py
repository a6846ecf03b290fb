"""A lingering close() returns when the peer's kernel has the FIN, not its program.

Drawn for so-linger.md while the docs build: the ladder of ``peer_never_reads``.
The other runs below are not drawn; they check the page's list of what
SO_LINGER does not do, so the build fails if the kernel disagrees.
Run it by hand with ``python so_linger_peer_kernel.py``.
"""

import os
import socket
import struct
import time

import matplotlib.pyplot as plt

import socklab

PORT = 4321
LINGER = struct.pack("ii", 1, 5)


def peer_never_reads(lab):
    listener = socket.create_server(("127.0.0.1", PORT))
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.call(client.send, b"hello", label="send")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the 5 bytes
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER)
    lab.call(client.close, label="close(), linger 5")
    lab.snapshot("after close()")
    lab.call(server.close, label="close(), 5 bytes unread")
    lab.wait_packet("R.")


run = socklab.run(peer_never_reads)
run.expect(
    calls={"client: send": 5, "client: close(), linger 5": None},
    flow=[
        "client [S]",
        "server [S.]",
        "client [.]",
        "client [P.]",
        "server [.]",
        "client [F.]",
        "server [.]",
        "server [R.]",
    ],
    states={"after close()": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 6)}},
    resets=[("server", "TCP_ABORT_ON_CLOSE")],  # the server's close() found 5 bytes unread
)
fin, ack = run.packets[5], run.packets[6]
assert run.call("client: close(), linger 5").time_ns > ack.time_ns  # returned after the ACK
assert ack.time_ns - fin.time_ns > 10_000_000  # a delayed ACK: tens of milliseconds


# Not drawn: the other claims of this page, each a small run.
def connected():
    listener = socket.create_server(("127.0.0.1", PORT))
    client = socket.create_connection(("127.0.0.1", PORT))
    return listener, client, listener.accept()[0]


# "Quick": well under the shortest linger time here (1 s), with room for a loaded build machine
# (a forked copy of a 200 MB docs build takes tens of ms to exit on 2 busy cores).
QUICK = 0.5


def timed(lab, fn, label):
    start = time.monotonic()
    lab.call(fn, label=label)
    lab.record(f"{label} was quick", time.monotonic() - start < QUICK)


def unread_data(lab):  # {1, 5} and unread data: RST at once, no waiting
    listener, client, server = connected()
    server.send(b"hello")
    lab.wait_packet(".", dport=PORT, after=1)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER)
    timed(lab, client.close, "close")
    lab.wait_packet("R.")


def fill(client):
    client.setblocking(False)
    try:
        while True:
            client.send(b"x" * 1000)
    except BlockingIOError:
        client.setblocking(True)


def stalled_pair():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.connect(("127.0.0.1", PORT))
    server, _ = listener.accept()
    fill(client)
    return listener, client, server


def shutdown_does_not_linger(lab):
    listener, client, server = stalled_pair()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 1))
    timed(lab, lambda: client.shutdown(socket.SHUT_WR), "shutdown")
    lab.snapshot("after shutdown()")


def exit_with(lab, linger):  # a forked copy holds the last descriptor, then exits
    listener, client, server = stalled_pair()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", *linger))
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(go_read, 1)
        os._exit(0)
    client.close()  # the copy still holds the socket: nothing happens yet
    timed(lab, lambda: (os.write(go_write, b"x"), os.waitpid(pid, 0)), "exit")
    if linger[1] == 0:
        lab.wait_packet("R.", dport=PORT)


def after_time_wait(lab):  # the connection already ended: nothing left to abort
    listener, client, server = connected()
    client.shutdown(socket.SHUT_WR)
    lab.wait_packet(".", sport=PORT)
    server.close()
    lab.wait_packet(".", dport=PORT, after=1)
    lab.snapshot("both FINs done")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    lab.call(client.close, label="close")
    lab.snapshot("after close()")


def shutdown_with_linger_zero(lab):
    listener, client, server = connected()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    lab.call(client.shutdown, socket.SHUT_WR, label="shutdown")
    lab.wait_packet(".", sport=PORT)
    lab.call(client.close, label="close")
    lab.wait_packet("R.")


HANDSHAKE = ["client [S]", "server [S.]", "client [.]"]
unread = socklab.run(unread_data)
unread.expect(values={"close was quick": True}, flow=HANDSHAKE + ["server [P.]", "client [.]", "client [R.]"],
              resets=[("client", "TCP_ABORT_ON_CLOSE")])
socklab.run(shutdown_does_not_linger).expect(
    values={"shutdown was quick": True}, states={"after shutdown()": {"client": {"state": "FIN_WAIT1"}}}
)
socklab.run(lambda lab: exit_with(lab, (1, 1)), name="exit, linger 1").expect(values={"exit was quick": True})
exit_zero = socklab.run(lambda lab: exit_with(lab, (1, 0)), name="exit, linger 0")
exit_zero.expect(values={"exit was quick": True}, resets=[("client", "TCP_STATE")])  # as close() with {1, 0}
assert "client [R.]" in exit_zero.flow()
socklab.run(after_time_wait).expect(
    flow=HANDSHAKE + ["client [F.]", "server [.]", "server [F.]", "client [.]"],
    states={"both FINs done": {"client": "TIME_WAIT"}, "after close()": {"client": "TIME_WAIT"}},
    resets=[],
)
socklab.run(shutdown_with_linger_zero).expect(flow=HANDSHAKE + ["client [F.]", "server [.]", "client [R.]"],
                                              resets=[("client", "TCP_STATE")])
run.ladder()

if __name__ == "__main__":
    plt.show()
