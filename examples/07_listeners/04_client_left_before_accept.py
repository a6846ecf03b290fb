"""
The client left before accept()
===============================

A client connects, sends its request and closes, all before the server gets
round to ``accept()``. The kernel completed the handshake on its own and
queued the connection; ``accept()`` hands it over as if nothing happened.
The server then reads the request and the end of file at once, and its
reply is sent, but reaches only the client's orphan, which answers with an
RST. A client that left with a reset (``SO_LINGER {1, 0}``) is accepted
too: its request can still be read, then ``recv()`` fails with
``ECONNRESET``.
"""

# %%
# The scenario
# ------------
# The listener is open; the server program is busy and does not call
# ``accept()``. The client connects (the kernel answers the handshake for
# the listener), sends ``GET /`` and closes. Once the client's side is in
# ``FIN-WAIT-2``, the server calls ``accept()``, reads twice and replies
# twice.
import socket
import struct

import socklab

PORT = 4321
REQUEST = b"GET /"
LINGER_ZERO = struct.pack("ii", 1, 0)  # struct linger { l_onoff = 1, l_linger = 0 }


def listening():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(8)
    return listener


def left_with_fin(lab):
    listener = listening()
    client = socket.create_connection(("127.0.0.1", PORT))
    lab.call(client.send, REQUEST, label="send request")
    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT, after=1)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")
    lab.snapshot("before accept()")

    server, _ = lab.call(listener.accept, label="accept()")
    lab.call(server.recv, 100, label="recv #1")
    lab.call(server.recv, 100, label="recv #2")
    lab.call(server.send, b"reply", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_packet("R", dport=PORT)  # the client's orphan answers
    lab.wait_state(server, None)
    lab.call(server.send, b"reply", socket.MSG_NOSIGNAL, label="send #2")
    lab.snapshot("after the server's sends")


run = socklab.run(left_with_fin)

# %%
# Socket states
# -------------
# Before ``accept()``, the connection is already complete and ended on the
# client's side: the listener's ``Recv-Q`` 1 is the accept queue's one
# connection, and that connection, not yet accepted, is listed as the
# server's socket in ``CLOSE-WAIT`` with ``Recv-Q`` 6 (the 5 bytes of the
# request and the FIN). The client's closed socket waits in ``FIN-WAIT-2``.
# After the server's reply and the reset it drew, neither is left.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``accept()`` returns the connection as usual. ``recv #1`` returns the
# request, ``recv #2`` the end of file, at once: a server that reads a
# request and then its end of file knows the client is gone before it
# answers. The reply's ``send()`` succeeds anyway (the server's side is
# only half closed), and the next ``send()`` fails with ``EPIPE``.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The whole exchange with the client comes before ``accept()``: handshake,
# request, FIN, all acknowledged by the server's kernel. The server's reply
# ``[P.]`` then draws the ``[R]``.
socklab.show(run.trace())

# %%
# The ladder: ``accept()`` comes after the client's FIN.
socklab.show(run.ladder())

# %%
# The kernel's account: the server's socket was ``TCP_ESTABLISHED``, then
# ``TCP_CLOSE_WAIT``, all inside the accept queue; the reset came from the
# client's orphan (``TCP_TIMEWAIT_SOCKET``: the small socket that keeps a
# closed connection's ``FIN_WAIT2``), and the server took it in
# ``TCP_CLOSE_WAIT``, which is why the next ``send()`` reports ``EPIPE``.
socklab.show(run.events())

# %%
# A client that left with a reset
# -------------------------------
# The same, but the client sets ``SO_LINGER {1, 0}`` before its ``close()``,
# which sends an RST instead of a FIN. The server accepts, asks for the
# peer's address, reads twice and replies once.


def left_with_rst(lab):
    listener = listening()
    client = socket.create_connection(("127.0.0.1", PORT))
    lab.call(client.send, REQUEST, label="send request")
    lab.wait_packet(".", sport=PORT)  # the request is in the server's queue
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    lab.call(client.close, label="close(), linger 0")
    lab.wait_packet("R.", dport=PORT)
    lab.snapshot("before accept()")

    server, address = lab.call(listener.accept, label="accept()")
    lab.record("address accept() returned", address)
    lab.call(server.getpeername, label="getpeername()")
    lab.call(server.recv, 100, label="recv #1")
    lab.call(server.recv, 100, label="recv #2")
    lab.call(server.send, b"reply", socket.MSG_NOSIGNAL, label="send")


run_rst = socklab.run(left_with_rst)

# %%
# Before ``accept()``, the listener's ``Recv-Q`` is still 1, but the
# connection is no longer in the table: the reset moved it to ``CLOSED``,
# which ``ss`` does not list, and left it in the accept queue.
# ``accept()`` returns it with the client's address; ``getpeername()`` on
# it fails with ``ENOTCONN``. The request can still be read (the reset did
# not discard it); the next ``recv()`` reports the reset, ``ECONNRESET``,
# and ``send()`` fails with ``EPIPE``. Nothing is sent after the reset: the
# server's calls only read what the kernel kept. Linux counts this client's
# abort as ``TcpExtTCPAbortOnData``, the counter it also uses for a
# ``SO_LINGER {1, 0}`` close.
socklab.show(run_rst.states(), run_rst.results(), run_rst.trace(), run_rst.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    calls={"client: send request": len(REQUEST), "server: recv #1": REQUEST, "server: recv #2": b"",
           "server: send #1": 5, "server: send #2": "EPIPE"},
    flow=["client [S]", "server [S.]", "client [.]", "client [P.]", "server [.]", "client [F.]", "server [.]",
          "server [P.]", "client [R]"],
    states={"before accept()": {"listener": ("LISTEN", 1), "server": ("CLOSE_WAIT", len(REQUEST) + 1),
                                "client": "FIN_WAIT2"},
            "after the server's sends": {"listener": ("LISTEN", 0), "server": None, "client": None}},
    resets=[("client", "TCP_TIMEWAIT_SOCKET")],
    transitions={"server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "CLOSE"]},
)
run_rst.expect(
    calls={"server: getpeername()": "ENOTCONN", "server: recv #1": REQUEST, "server: recv #2": "ECONNRESET",
           "server: send": "EPIPE"},
    flow=["client [S]", "server [S.]", "client [.]", "client [P.]", "server [.]", "client [R.]"],
    states={"before accept()": {"listener": ("LISTEN", 1), "server": None, "client": None}},
    resets=[("client", "TCP_STATE")],
    transitions={"server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE"]},
    counters={"TcpExtTCPAbortOnData": 1},
)
run.summarize(closer="client: close()", sends=["server: send #1", "server: send #2"], recv="server: recv #2")
run_rst.summarize(closer="client: close(), linger 0", sends=["server: send"], recv="server: recv #2")
assert run_rst.value("address accept() returned")[0] == "127.0.0.1", (
    "the page says accept() returned the client's address")
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``accept(2)`` (Linux "passes already-pending network errors on the new
#    socket as an error code from accept()"; the pending reset of this
#    page's second run was not reported there), ``listen(2)`` (the queue of completely
#    established sockets), ``getpeername(2)`` (``ENOTCONN``), ``recv(2)``,
#    ``send(2)``; RFC 9293 section 3.10.7.4 (a reset in ``CLOSE-WAIT``:
#    "any outstanding RECEIVEs and SEND should receive 'reset'
#    responses"); ``include/net/rstreason.h``.
