"""POLLHUP needs both directions shut; the other poll/epoll/select/MSG_PEEK claims.

Drawn for detecting-close.md while the docs build: the ladder of
``both_directions`` asking for POLLIN. The other runs are not drawn; they check
the page's poll table and its MSG_PEEK, epoll and select() claims.
Run it by hand with ``python detecting_close_checks.py``.
"""

import select
import socket

import matplotlib.pyplot as plt

import socklab

PORT = 4321
ALL = select.POLLIN | select.POLLOUT | select.POLLRDHUP


def connected():
    listener = socket.create_server(("127.0.0.1", PORT))
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def both_directions(lab, ask, labels):
    listener, client, server = connected()
    lab.call(client.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_poll(server, ask, timeout=0, label=labels[0])
    lab.call(server.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs that FIN
    lab.wait_poll(server, ask, timeout=0, label=labels[1])


run = socklab.run(lambda lab: both_directions(lab, select.POLLIN, ["poll #1", "poll #2"]), name="POLLIN")
run.expect(calls={"server: poll #1": "POLLIN", "server: poll #2": "POLLIN|POLLHUP"})
socklab.run(lambda lab: both_directions(lab, ALL, ["one way", "both ways"]), name="ALL").expect(
    calls={"one way": "POLLIN|POLLOUT|POLLRDHUP", "both ways": "POLLIN|POLLOUT|POLLHUP|POLLRDHUP"}
)


def own_shutdown_only(lab):  # not drawn
    listener, client, server = connected()
    server.shutdown(socket.SHUT_WR)
    lab.wait_packet(".", dport=PORT, after=1)
    lab.wait_poll(server, ALL, timeout=0, label="poll")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send")
    epoll = select.epoll()
    epoll.register(client.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
    lab.record("client's epoll events", epoll.poll(0)[0][1])
    lab.record("client readable by select", select.select([client], [], [], 0)[0] == [client])


socklab.run(own_shutdown_only).expect(
    calls={"poll": "POLLOUT", "send": "EPIPE"},
    values={"client's epoll events": select.EPOLLIN | select.EPOLLRDHUP, "client readable by select": True},
)


def rst_in_close_wait(lab):  # not drawn
    listener, client, server = connected()
    client.close()
    lab.wait_packet(".", sport=PORT)
    server.send(b"a", socket.MSG_NOSIGNAL)
    lab.wait_packet("R")
    lab.wait_state(server, None)
    lab.wait_poll(server, ALL, timeout=0, label="poll")


socklab.run(rst_in_close_wait).expect(calls={"poll": "POLLIN|POLLOUT|POLLERR|POLLHUP|POLLRDHUP"})


def peek(lab):  # not drawn
    listener, client, server = connected()
    client.send(b"ab")
    client.shutdown(socket.SHUT_WR)
    lab.wait_packet(".", sport=PORT, after=1)  # the server's kernel ACKs the FIN
    for label in ("peek #1", "recv #1", "peek #2", "recv #2"):
        flags = socket.MSG_DONTWAIT | (socket.MSG_PEEK if "peek" in label else 0)
        lab.call(server.recv, 100, flags, label=label)


socklab.run(peek).expect(calls={"peek #1": b"ab", "recv #1": b"ab", "peek #2": b"", "recv #2": b""})
run.ladder()

if __name__ == "__main__":
    plt.show()
