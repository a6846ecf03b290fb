"""
What an RST throws away
=======================

The seed warns: "If the other end has unread data in the socket buffer when
the RESET arrives, that data will be purged". On this kernel it is not: the
receiver still reads every byte queued before the RST, then gets
``ECONNRESET``, then ``b''``. What is lost is everything else either kernel
still held: the closer's bytes received but not read and written but not
sent, and the receiver's own bytes written but not yet sent.
"""

# %%
# Unread data at the receiving end
# --------------------------------
# The seed's case. The client sends ``b"hello"``; the server's kernel
# acknowledges it, but the server program has not read it yet. Then the
# client closes with ``SO_LINGER {1, 0}``, which sends an RST. Only after
# the RST has arrived does the server call ``recv()``.
import contextlib
import socket
import struct

import socklab

PORT = 4321
LINGER_ZERO = struct.pack("ii", 1, 0)  # struct linger { l_onoff = 1, l_linger = 0 }


def connected_pair():
    """The seed's set-up: listener on 127.0.0.1:4321, client, accepted server socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def fill(lab, sender, receiver_port):
    """Write from `sender` until its kernel takes no more, then wait for the receiving
    kernel to shut its window (``win 0``): from then on, what is still in the sender's
    ``Send-Q`` stays there, with no timer involved."""
    sender.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sender.send(b"x" * 1000)
    sender.setblocking(True)
    lab.wait_packet(".", sport=receiver_port, win=0)


def unread_at_receiver(lab):
    listener, client, server = connected_pair()
    lab.call(client.send, b"hello", label="send")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the 5 bytes
    lab.snapshot("before the reset")

    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    lab.call(client.close, label="close(), linger 0, 5 bytes unread by server")
    lab.wait_packet("R.", dport=PORT)
    lab.wait_state(client, None)
    lab.wait_state(server, None)  # the server's kernel took the reset in
    lab.snapshot("after the reset")

    lab.call(server.recv, 100, label="recv #1")
    lab.call(server.recv, 100, label="recv #2")
    lab.call(server.recv, 100, label="recv #3")


run = socklab.run(unread_at_receiver)

# %%
# Before the reset the server's ``Recv-Q`` holds the 5 unread bytes. After
# it, neither connection is in the table any more: the server's socket is
# ``CLOSED``, which ``ss`` does not list, even though it still holds data.
socklab.show(run.states())

# %%
# Here the seed's claim does not hold. The first ``recv()`` returns
# ``b'hello'``: the bytes queued before the RST were not purged. Only the
# next ``recv()`` reports the reset (``ECONNRESET``), and the one after it
# returns ``b''``. RFC 9293 says of a reset arriving in ``ESTABLISHED`` that
# "all segment queues should be flushed"; this kernel keeps the data it has
# already acknowledged to the sender and hands it out first. (What the
# seed's kernel or other systems do, this page cannot show: it shows the
# kernel that built it.)
socklab.show(run.results())

# %%
# The trace: handshake, the client's ``[P.]`` with 5 bytes, the server's
# ``[.]`` acknowledging them (``ack 6``), then the client's ``[R.]`` at
# ``seq 6``, right after its data.
socklab.show(run.trace())

# %%
# The ladder diagram of this run, time flowing down. The server's three
# ``recv()`` calls are written on its lifeline *below* the red ``RST-ACK``:
# all three were made after the reset had arrived, and the first one still
# returned the 5 bytes.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# this run, from the states the tables show: both ``ESTABLISHED`` before the
# reset, both gone (``CLOSED``) after it. Neither path is drawn in the RFC's
# figure (dashed: transitions described in its text): the client's
# ``close()`` with ``SO_LINGER`` 0 is the RFC's ABORT call, which sends a
# reset and enters ``CLOSED`` at once (section 3.10.5), and the server goes
# from ``ESTABLISHED`` straight to ``CLOSED`` on that reset (section
# 3.10.7.4). The two runs further down take the same two paths (the claims
# at the end of the page check their states and packets too). What this page
# is about does not show here: a state diagram has no place for data. The
# bytes that survived the reset, and those that did not, are in the
# ``Recv-Q`` and ``Send-Q`` columns of the tables, not in any state; and the
# server's socket, already ``CLOSED``, still handed its bytes to ``recv()``.
# The ``run.expect`` in this cell checks those states and the reset against
# the run.
CLIENT_PATH = ["ESTABLISHED", "close() with SO_LINGER 0"]
SERVER_PATH = ["ESTABLISHED", "rcv RST"]
run.expect(
    states={
        "before the reset": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after the reset": {"client": None, "server": None},
    },
    packets={5: {"flags": "R.", "dport": PORT}},  # after the data and its ACK, the client's reset
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(CLIENT_PATH),
    "server": socklab.state_path(SERVER_PATH),
}))

# %%
# Unread data at the closing end
# ------------------------------
# Now the other way round: the server sends ``b"reply"``, the client's kernel
# acknowledges it, and the client program closes with ``SO_LINGER {1, 0}``
# without ever reading it.


def unread_at_closer(lab):
    listener, client, server = connected_pair()
    lab.call(server.send, b"reply", label="send")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the 5 bytes
    lab.snapshot("before the reset")

    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    lab.call(client.close, label="close(), linger 0, 5 bytes unread")
    lab.wait_packet("R.", dport=PORT)
    lab.wait_state(client, None)
    lab.wait_state(server, None)  # the server's kernel took the reset in
    lab.snapshot("after the reset")

    lab.call(server.recv, 100, label="recv #1")
    lab.call(server.recv, 100, label="recv #2")
    lab.call(server.send, b"more", socket.MSG_NOSIGNAL, label="send again")


run_closer = socklab.run(unread_at_closer)

# %%
# The 5 bytes sit in the client's ``Recv-Q`` before the close; after it the
# client is gone, and the bytes with it. The client's kernel had
# acknowledged them (``ack 6`` below), so for the server they were
# delivered.
socklab.show(run_closer.states())

# %%
# ``send()`` returned 5. All the server learns afterwards is
# ``ECONNRESET``, then ``b''``, then ``EPIPE``: nothing says whether its 5
# bytes were read. These bytes are lost, and this is why the seed's advice
# holds: a client may reset only once it has read the entire response.
socklab.show(run_closer.results())

# %%
# The client's ``[R.]`` carries ``ack 6``: its kernel had received all 5
# bytes.
socklab.show(run_closer.trace())

# %%
# In the ladder, the ``PSH-ACK`` with the 5 bytes crosses to the client and
# its ``ACK`` comes back before the red ``RST-ACK`` leaves: on the server's
# side, ``send = 5`` and that ``ACK`` are all there is to see of those bytes.
socklab.show(run_closer.ladder())

# %%
# Unsent data at the closing end
# ------------------------------
# The third place bytes can wait: the closer's send queue. The server reads
# nothing and its receive buffer is small (``SO_RCVBUF`` 4096), so the client
# can write more than the server's kernel will take: once the server's
# kernel advertises a window of 0, the rest stays in the client's
# ``Send-Q``, written but not sent. Then the client closes with
# ``SO_LINGER {1, 0}``.


def small_buffers_pair():
    """The seed's set-up with 4096-byte buffers, so that a few packets fill them."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the accepted socket inherits it
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.connect(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def read_to_the_end(lab, sock):
    """recv() until end of file or an error; record how many bytes came first."""
    got = 0
    while data := lab.call(sock.recv, 1 << 16, label="recv"):
        got += len(data)
    lab.record("bytes read before the reset", got)


def unsent_at_closer(lab):
    listener, client, server = small_buffers_pair()
    fill(lab, client, PORT)
    lab.snapshot("before the reset")

    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    lab.call(client.close, label="close(), linger 0, bytes unsent")
    lab.wait_packet("R.", dport=PORT)
    lab.wait_state(server, None)  # the server's kernel took the reset in
    lab.snapshot("after the reset")
    read_to_the_end(lab, server)


run_unsent = socklab.run(unsent_at_closer)
unsent_before = run_unsent.states_at("before the reset")

# %%
# Before the reset: the server's ``Recv-Q`` holds what reached it, the
# client's ``Send-Q`` what never left. After it both connections are gone.
socklab.show(run_unsent.states())

# %%
# The server still reads every byte that reached it, then gets
# ``ECONNRESET``. The client's unsent bytes are gone: no packet ever carried
# them.
socklab.show(run_unsent.results())
print(f"the server had {unsent_before['server'].recv_q} bytes unread, and read "
      f"{run_unsent.value('bytes read before the reset')}; "
      f"{unsent_before['client'].send_q} bytes were still in the client's Send-Q")
with run_unsent.claim("the client's packets carried the bytes the server had received"):
    carried = sum(p.length for f, p in zip(run_unsent.flow(), run_unsent.packets, strict=True) if "client" in f)
    print(f"the client's packets carried {carried} bytes")
    assert unsent_before["server"].recv_q == carried, f"it had {unsent_before['server'].recv_q}"

# %%
# The trace: the data packets, the server's ``[.]`` with ``win 0`` (its
# buffer is full), and the client's ``[R.]``, whose ``seq`` is right after the
# last byte that left: nothing after it was ever sent.
socklab.show(run_unsent.trace())

# %%
# Unsent data at the receiving end
# --------------------------------
# The RST also throws away what the *receiver* of the reset had queued to
# send. The same small buffers, the other way round: the server writes until
# the client's window is shut, then the client, which has read nothing,
# closes with ``SO_LINGER {1, 0}``.


def unsent_at_receiver(lab):
    listener, client, server = small_buffers_pair()
    fill(lab, server, 50000)
    lab.snapshot("before the reset")

    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    lab.call(client.close, label="close(), linger 0, bytes unread")
    lab.wait_packet("R.", dport=PORT)
    lab.wait_state(server, None)  # the server's kernel took the reset in
    lab.snapshot("after the reset")
    lab.call(server.send, b"more", socket.MSG_NOSIGNAL, label="send")


run_receiver = socklab.run(unsent_at_receiver)
receiver_before = run_receiver.states_at("before the reset")

# %%
# Before the reset the server's ``Send-Q`` holds bytes its kernel could not
# send (the client's window was shut), and the client's ``Recv-Q`` what did
# arrive. The reset ends both: the server's queued bytes go with its socket,
# without being sent, and its next ``send()`` reports the reset.
socklab.show(run_receiver.states(), run_receiver.results())

# %%
# On the wire: the server's data up to the client's ``win 0``, then the
# client's ``[R.]``, and nothing from the server after it.
socklab.show(run_receiver.trace())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
HANDSHAKE = ["client [S]", "server [S.]", "client [.]"]
GONE = {"client": None, "server": None}
run.expect(
    calls={"client: send": 5, "server: recv #1": b"hello",
           "server: recv #2": "ECONNRESET", "server: recv #3": b""},
    flow=HANDSHAKE + ["client [P.]", "server [.]", "client [R.]"],
    states={
        "before the reset": {"client": ("ESTAB", 0), "server": ("ESTAB", 5)},
        "after the reset": GONE,
    },
    packets={4: {"ack": 6}, 5: {"flags": "R.", "seq": 6, "ack": 1}},
)
run_closer.expect(
    calls={"server: send": 5, "server: recv #1": "ECONNRESET", "server: recv #2": b"",
           "server: send again": "EPIPE"},
    flow=HANDSHAKE + ["server [P.]", "client [.]", "client [R.]"],
    states={
        "before the reset": {"client": ("ESTAB", 5), "server": ("ESTAB", 0)},
        "after the reset": GONE,
    },
    packets={5: {"flags": "R.", "seq": 1, "ack": 6}},
)

def only_one_side_sends_data(run, sender):
    """The handshake, data from `sender` alone (each ACKed whenever the kernel chose), the reset last."""
    with run.claim(f"the handshake, data from the {sender} alone, the reset last"):
        flow = run.flow()
        data = [p for p in run.packets[3:-1] if p.length]
        assert flow[:3] == HANDSHAKE and flow[-1] == "client [R.]" and data, flow
        assert all(f"{sender} [P.]" == f for f, p in zip(flow[3:-1], run.packets[3:-1], strict=True)
                   if p.length), flow


only_one_side_sends_data(run_unsent, "client")
only_one_side_sends_data(run_receiver, "server")
run_unsent.expect(
    states={
        "before the reset": {"client": {"state": "ESTAB", "recv_q": 0}, "server": {"state": "ESTAB"}},
        "after the reset": GONE,
    },
    values={"bytes read before the reset": unsent_before["server"].recv_q},
)
assert unsent_before["client"].send_q > 0, "the page says the client still held unsent bytes"
with run_unsent.claim("the reset follows the last byte sent, after the server's zero window"):
    carried = sum(p.length for f, p in zip(run_unsent.flow(), run_unsent.packets, strict=True) if "client" in f)
    assert run_unsent.packets[-1].seq == 1 + carried and run_unsent.packets[-2].win == 0
assert run_unsent.calls[-1].errno == "ECONNRESET", "the page says the server's last recv() reports the reset"
run_receiver.expect(
    calls={"server: send": "ECONNRESET"},
    states={"before the reset": {"client": {"state": "ESTAB"}, "server": {"state": "ESTAB", "recv_q": 0}},
            "after the reset": GONE},
)
assert receiver_before["server"].send_q > 0, "the page says the server had bytes queued to send"
with run_receiver.claim("the client had received every byte the server's packets carried"):
    flow = run_receiver.flow()
    assert receiver_before["client"].recv_q == sum(p.length for f, p in zip(flow, run_receiver.packets, strict=True)
                                                   if "server" in f)
# For the site's "what happens when" matrix: the reset, then the server's
# first recv(). (Not the second run: there the server's recv() came before its
# send(), an order the matrix's columns cannot show.)
run.summarize(closer="client: close(), linger 0, 5 bytes unread by server",
              recv="server: recv #1")
run_unsent.summarize(closer="client: close(), linger 0, bytes unsent")
socklab.show(run.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset of this page with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``). Recorded as root only: elsewhere these claims
# are reported as unchecked. The two reasons tell the runs apart: where the
# closing client had read everything (the first and third runs), its
# ``SO_LINGER {1, 0}`` is what reset the connection (``TCP_STATE``); where it
# still had unread bytes (the second and fourth), the kernel names the unread
# data (``TCP_ABORT_ON_CLOSE``). ``tcp_close()`` checks for unread data first,
# so in those runs the linger option changes nothing: the same ``close()``
# without it resets the connection too (:ref:`close() with unread data
# <sphx_glr_auto_examples_03_reset_03_close_with_unread_data.py>`).
#
# * ``TCP_STATE``: the connection was aborted by the socket's own state change
#   (``close()`` with ``SO_LINGER {1, 0}``, or a listener closing with
#   connections in its queue), not by unread data.
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
run.expect(resets=[('client', 'TCP_STATE')])
run_closer.expect(resets=[('client', 'TCP_ABORT_ON_CLOSE')])
run_unsent.expect(resets=[('client', 'TCP_STATE')])
run_receiver.expect(resets=[('client', 'TCP_ABORT_ON_CLOSE')])
socklab.show(run.events())

# %%
# .. admonition:: References
#
#    ``socket(7)`` (``SO_LINGER``; it does not describe the zero timeout), ``recv(2)``
#    (``ECONNRESET``; a return value of 0), ``send(2)`` (``EPIPE``, ``MSG_NOSIGNAL``),
#    ``socket(7)`` (``SO_RCVBUF``, ``SO_SNDBUF``); RFC 9293 section 3.10.5 (ABORT: the queued SENDs and
#    RECEIVEs get "connection reset", segments queued for transmission are flushed) and
#    section 3.10.7.4 (an RST arriving in ``ESTABLISHED``: "All segment queues should be
#    flushed").
