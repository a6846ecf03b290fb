"""
Answered without reading the body
=================================

A server reads a request's headers, sends its response (say, ``413 Content
Too Large``) and closes, leaving the request's body unread. Its ``close()``
sends an RST right behind the response. On this kernel a client that has
finished writing still reads the whole response, then gets
``ECONNRESET``; a client still writing its body gets ``ECONNRESET`` from
``send()`` first, though the response is waiting in its receive queue.
"""

# %%
# The client had finished writing
# -------------------------------
# The client sends headers and a 1000-byte body in one ``send()``. The server
# reads only the headers, answers and closes; the scenario waits for the
# client's kernel to acknowledge the response, then for the reset. Only then
# does the client read.
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


def answer_and_close(lab, client, server):
    """The server reads the headers, answers, and closes with the body (or part of it) unread."""
    lab.call(server.recv, len(HEADERS), label="recv headers")
    lab.call(server.send, RESPONSE, label="send response")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the response
    lab.snapshot("response delivered, body unread")
    lab.call(server.close, label="close(), body unread")
    lab.wait_packet("R.", sport=PORT)
    lab.wait_state(client, None)  # the client's kernel took the reset in
    lab.snapshot("after the server's close")


def finished_writing(lab):
    listener, client, server = connected_pair()
    lab.call(client.send, HEADERS + BODY, label="send request")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs it
    answer_and_close(lab, client, server)

    lab.call(client.recv, 1024, label="recv #1")
    lab.call(client.recv, 1024, label="recv #2")
    lab.call(client.recv, 1024, label="recv #3")


run = socklab.run(finished_writing)

# %%
# Before the close, the server's ``Recv-Q`` holds the unread body and the
# client's the response. After it both sockets are gone, but the client's
# socket, though no longer in the table, still holds the response.
socklab.show(run.states())

# %%
# The first ``recv()`` returns the whole response: the bytes queued before
# the RST were kept (the page
# :ref:`What an RST throws away <sphx_glr_auto_examples_03_reset_02_rst_data_loss.py>`
# shows the same rule). The second fails with ``ECONNRESET``, the third
# returns ``b''``. A client that reads its response before it looks for
# errors has it all.
socklab.show(run.results())

# %%
# The request ``[P.]``, the server's ``[.]``, the response ``[P.]`` and the
# client's ``[.]``, then the server's ``[R.]``. Its ``ack`` covers the whole
# body: the server's kernel had received every byte the program did not
# read.
socklab.show(run.trace())

# %%
# The ladder: the client's three ``recv()`` calls all come below the red
# ``RST-ACK``, and the first still returns the response.
socklab.show(run.ladder())

# %%
# The client was still writing
# ----------------------------
# The same server, but the client has sent the headers and only half of the
# body when the server answers and closes. After the reset, the client sends
# the second half, then reads.


def still_writing(lab):
    listener, client, server = connected_pair()
    lab.call(client.send, HEADERS + BODY[:500], label="send headers, half the body")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs it
    answer_and_close(lab, client, server)

    lab.call(client.send, BODY[500:], socket.MSG_NOSIGNAL, label="send the other half")
    lab.call(client.recv, 1024, label="recv #1")
    lab.call(client.recv, 1024, label="recv #2")


run_writing = socklab.run(still_writing)

# %%
# The ``send()`` of the second half fails with ``ECONNRESET``: the reset is
# reported to the next ``send()``, or to the first ``recv()`` that finds no
# queued data, and this client's next call was a ``send()``. The response was there all along: the next ``recv()``
# returns it, then ``b''`` (the reset was already reported). A client that reads when a
# send fails gets the ``413``; one that gives up on the failed write can
# only report a reset. The error reported by ``send()`` is not reported
# again to ``recv()``: the page
# :ref:`SO_LINGER {1, 0} <sphx_glr_auto_examples_03_reset_01_linger_zero.py>`
# shows the same order (``ECONNRESET``, then ``EPIPE``) for two sends.
socklab.show(run_writing.results())

# %%
# Nothing leaves the client after the reset: its failed ``send()`` put
# nothing on the wire.
#
# What would lose the response on this kernel is a response the server's
# kernel had not sent yet when the program closed: a reset discards the
# closer's send queue (the page
# :ref:`What an RST throws away <sphx_glr_auto_examples_03_reset_02_rst_data_loss.py>`
# shows it), so a response larger than the client's receive window is cut
# short. The :ref:`next page
# <sphx_glr_auto_examples_06_server_closed_on_you_04_lingering_close.py>`
# shows the close that avoids the reset altogether.
socklab.show(run_writing.trace())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
HANDSHAKE = ["client [S]", "server [S.]", "client [.]"]
ANSWER_AND_RESET = ["server [P.]", "client [.]", "server [R.]"]
run.expect(
    calls={"client: send request": len(HEADERS) + len(BODY), "server: recv headers": HEADERS,
           "client: recv #1": RESPONSE, "client: recv #2": "ECONNRESET", "client: recv #3": b""},
    flow=HANDSHAKE + ["client [P.]", "server [.]"] + ANSWER_AND_RESET,
    states={
        "response delivered, body unread": {"client": ("ESTAB", len(RESPONSE)),
                                            "server": ("ESTAB", len(BODY))},
        "after the server's close": {"client": None, "server": None},
    },
    packets={7: {"flags": "R.", "seq": 1 + len(RESPONSE), "ack": 1 + len(HEADERS) + len(BODY)}},
)
run_writing.expect(
    calls={"client: send the other half": "ECONNRESET", "client: recv #1": RESPONSE,
           "client: recv #2": b""},
    flow=HANDSHAKE + ["client [P.]", "server [.]"] + ANSWER_AND_RESET,
    states={
        "response delivered, body unread": {"client": ("ESTAB", len(RESPONSE)), "server": ("ESTAB", 500)},
        "after the server's close": {"client": None, "server": None},
    },
)
socklab.show(run.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset of this page with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``). Recorded as root only: elsewhere these claims
# are reported as unchecked.
#
# * ``TCP_ABORT_ON_CLOSE``: ``close()`` found unread data in the receive queue
#   and aborted the connection (RFC 9293 3.6.1).
#
# The table below is the kernel's own account of the first of these runs:
# every state change of its sockets (the brief ones too); every reset sent,
# with the kernel's reason and the state of the socket that sent it where one
# did, and every reset taken; any segment the kernel dropped; and the TCP
# counters of the run's namespace that moved. Recorded as root only, like the
# reasons.
run.expect(resets=[('server', 'TCP_ABORT_ON_CLOSE')])
run_writing.expect(resets=[('server', 'TCP_ABORT_ON_CLOSE')])
socklab.show(run.events())

# %%
# .. admonition:: References
#
#    ``close(2)``, ``recv(2)``, ``send(2)`` (``ECONNRESET``: "Connection reset by peer";
#    ``MSG_NOSIGNAL``); RFC 9293 section 3.6.1 (a CLOSE "while received data is still
#    pending" SHOULD send an RST); RFC 9112 section 9.6 ("If a server performs an
#    immediate close of a TCP connection, there is a significant risk that the client
#    will not be able to read the last HTTP response"); RFC 9110 section 15.5.14
#    (``413 Content Too Large``).
