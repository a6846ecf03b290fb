"""
Lingering close
===============

The fix for the :ref:`reset behind the response
<sphx_glr_auto_examples_06_server_closed_on_you_03_response_then_reset.py>`:
the server does not ``close()`` with the body unread. It calls
``shutdown(SHUT_WR)``, which sends a FIN after the response, reads and
discards whatever the client still sends until ``recv()`` returns ``b''``,
and only then calls ``close()``. The client, still writing its body, gets no
error; it reads the whole response and then ``b''``, and no RST is sent.
"""

# %%
# The scenario
# ------------
# The client of the previous page's second run: it has sent the headers and
# half of the body when the server answers. This server reads the headers,
# sends its response and shuts down its sending side. The client sends the
# other half, reads the response to the end and closes; the server reads
# until the end of file, then closes. The scenario waits for each ACK, so
# that the packets come in the same order in every run.
import socket

import socklab

PORT = 4321
HEADERS = b"POST /upload HTTP/1.1\r\nHost: lab\r\nContent-Length: 1000\r\n\r\n"
BODY = b"x" * 1000
RESPONSE = b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n\r\n"


def connected_pair():
    """A listener on 127.0.0.1:4321, a client, the accepted server socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def drain(lab, sock):
    """recv() and discard until end of file; record how many bytes that was."""
    drained = 0
    while data := lab.call(sock.recv, 4096, label="drain"):
        drained += len(data)
    lab.record("bytes drained", drained)


def lingering_close(lab):
    listener, client, server = connected_pair()
    server_ends = (f"127.0.0.1:{PORT}", f"127.0.0.1:{client.getsockname()[1]}")
    lab.call(client.send, HEADERS + BODY[:500], label="send headers, half the body")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs it

    lab.call(server.recv, len(HEADERS), label="recv headers")
    lab.call(server.send, RESPONSE, label="send response")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the response
    lab.call(server.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.wait_packet(".", dport=PORT, after=2)  # ... and the FIN (perhaps after a delay)
    lab.wait_state(server, "FIN_WAIT2")
    lab.snapshot("after shutdown on server")

    lab.call(client.send, BODY[500:], socket.MSG_NOSIGNAL, label="send the other half")
    lab.wait_packet(".", sport=PORT, after=1)  # the server's kernel ACKs it
    lab.call(client.recv, 1024, label="recv #1")
    lab.call(client.recv, 1024, label="recv #2")
    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT, after=2)  # the server's kernel ACKs the client's FIN
    lab.wait_state(client, None)
    lab.wait_state(server_ends, "TIME_WAIT")  # the connection, no longer the program's socket
    lab.snapshot("after close on client")

    drain(lab, server)
    lab.call(server.close, label="close()")
    lab.snapshot("after close on server")


run = socklab.run(lingering_close)

# %%
# Socket states
# -------------
# After the shutdown the server is in ``FIN-WAIT-2``, still able to read,
# with the unread half of the body in its ``Recv-Q``; the client is in
# ``CLOSE-WAIT`` with the response and the FIN in its ``Recv-Q`` (53 bytes
# plus 1). Once the client has closed, its socket is gone and the server's
# side of the connection is in ``TIME-WAIT`` (the side that sent the first
# FIN keeps the connection's addresses for a while), before the server
# program has read the rest of the body or called ``close()``: the kernel
# moved the connection to a ``TIME-WAIT`` entry of its own, and left the
# program's socket closed but still readable. Its ``Recv-Q`` column says 0:
# the unread bytes stayed with the program's socket.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``send()`` of the other half returns 500, where the previous page's client
# got ``ECONNRESET``: the server's ``shutdown(SHUT_WR)`` stopped its sending
# only, and its kernel still accepts data. The client reads the response,
# then ``b''``. The server's drain reads the 1000 body bytes it never
# wanted, then ``b''``, and closes.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The response ``[P.]`` and, right behind it, the server's ``[F.]``; the
# second half of the body ``[P.]``, acknowledged; the client's ``[F.]``,
# acknowledged. Two FINs, and no ``[R]``.
socklab.show(run.trace())

# %%
# The ladder: the server's blue ``FIN-ACK`` leaves at its ``shutdown()``,
# data still flows from the client after it, and the client's own
# ``FIN-ACK`` ends the connection. No red arrow.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took:
# the figure's solid paths, the ordinary close, where the previous page's
# server left the figure for ``CLOSED`` at once. The server's
# ``shutdown(SHUT_WR)`` is the figure's ``close()`` (the RFC's CLOSE, "I
# have no more data to send"): ``FIN-WAIT-1``, then ``FIN-WAIT-2`` once the
# client acknowledged the FIN, then ``TIME-WAIT`` on the client's FIN. The
# client goes through ``CLOSE-WAIT`` and, after its own ``close()``,
# ``LAST-ACK``, too brief for a snapshot, to ``CLOSED``. The ``run.expect``
# in this cell checks the states against the run.
run.expect(
    states={"after shutdown on server": {"server": "FIN_WAIT2", "client": "CLOSE_WAIT"},
            "after close on client": {"server": "TIME_WAIT", "client": None}},
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]),
    "server": socklab.state_path(["ESTABLISHED", "FIN_WAIT2", "TIME_WAIT"]),
}))

# %%
# A server cannot drain forever: a client that neither closes nor stops
# sending would keep it reading. RFC 9112 lets it stop once it is
# "reasonably certain" the client has received its response; servers bound
# the drain with a time limit or a byte count, and close (with a reset if
# data is still unread) when it runs out.
#
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    calls={"client: send the other half": 500, "client: recv #1": RESPONSE, "client: recv #2": b""},
    values={"bytes drained": len(BODY)},
    flow=["client [S]", "server [S.]", "client [.]",
          "client [P.]", "server [.]", "server [P.]", "client [.]",
          "server [F.]", "client [.]", "client [P.]", "server [.]",
          "client [F.]", "server [.]"],
    states={
        "after shutdown on server": {"server": ("FIN_WAIT2", 500), "client": ("CLOSE_WAIT", len(RESPONSE) + 1)},
        "after close on client": {"server": ("TIME_WAIT", 0), "client": None},
        "after close on server": {"server": "TIME_WAIT", "client": None},
    },
)
with run.claim("no reset is sent"):
    assert "R" not in "".join(p.flags for p in run.packets)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``shutdown(2)`` (``SHUT_WR``: "further transmissions will be disallowed"), ``recv(2)``
#    ("When a stream socket peer has performed an orderly shutdown, the return value will
#    be 0"), ``close(2)``; RFC 9112 section 9.6 ("To avoid the TCP reset problem, servers
#    typically close a connection in stages. First, the server performs a half-close by
#    closing only the write side of the read/write connection. The server then continues
#    to read from the connection until it receives a corresponding close by the client,
#    or until the server is reasonably certain that its own TCP stack has received the
#    client's acknowledgement of the packet(s) containing the server's last response.
#    Finally, the server fully closes the connection."); RFC 9293 section 3.6 (closing a
#    connection: CLOSE means "I have no more data to send", and the side that closes
#    may go on receiving; the side that closes first ends in TIME-WAIT).
