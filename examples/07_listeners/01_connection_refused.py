"""
Nobody listening: ECONNREFUSED
==============================

``connect()`` to a port where nothing listens fails with ``ECONNREFUSED``,
at once: the peer's kernel answers the SYN with an RST, and one round trip
later the client knows. A non-blocking ``connect()`` learns the same thing
through ``poll()`` and ``SO_ERROR``.
"""

# %%
# A blocking connect()
# --------------------
# No socket in this network namespace listens on port 4321. The client
# connects to it anyway.
import select
import socket

import socklab

PORT = 4321


def nobody_listening(lab):
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lab.snapshot("before connect")
    lab.call(client.connect, ("127.0.0.1", PORT), label="connect()")
    lab.snapshot("after connect")


run = socklab.run(nobody_listening)

# %%
# The table is empty before and after: nothing listens, and the client's
# socket is listed only while it is connecting (``SYN-SENT``), which here
# lasted one round trip, between the two snapshots.
socklab.show(run.states())

# %%
# ``connect()`` fails with ``ECONNREFUSED`` ("Connection refused"). The
# line under the table says how long the call lasted in this run: a
# loopback round trip. Had the SYN gone unanswered (a firewall that drops
# it, a host that is down), the same call would have retransmitted it and
# failed with ``ETIMEDOUT``, after some two minutes with this kernel's
# defaults (the page
# :ref:`A full accept queue <sphx_glr_auto_examples_07_listeners_03_accept_queue_full.py>`
# computes that schedule and runs a shortened one).
connect_call = run.call("client: connect()")
took_ms = (connect_call.time_ns - connect_call.start_ns) / 1e6
socklab.show(run.results())
print(f"connect() took {took_ms:.3f} ms")

# %%
# Two packets: the client's ``[S]`` and the answer ``[R.]``, with ``seq 0``
# and ``ack 1``: a reset that acknowledges the SYN, as RFC 9293 asks of a
# reset answering a segment that has no ACK. Its sender is labelled
# ``server`` here because port 4321 received a SYN; no socket sent it: the
# kernel answered for the port.
socklab.show(run.trace())

# %%
# The ladder: one SYN out, and one red ``RST-ACK`` straight back.
socklab.show(run.ladder())

# %%
# A non-blocking connect()
# ------------------------
# Event loops connect without blocking: ``connect()`` fails at once with
# ``EINPROGRESS``, and the program waits for the socket to become writable,
# then asks ``SO_ERROR`` how the attempt ended.


def nobody_listening_nonblocking(lab):
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setblocking(False)
    lab.call(client.connect, ("127.0.0.1", PORT), label="connect()")
    lab.wait_poll(client, select.POLLOUT, label="poll(POLLOUT)")
    lab.call(client.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR, label="getsockopt(SO_ERROR)")
    lab.call(client.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR, label="SO_ERROR again")


run_nonblocking = socklab.run(nobody_listening_nonblocking)

# %%
# ``connect()`` raises ``EINPROGRESS``; ``poll()`` reports ``POLLOUT``
# together with ``POLLERR`` and ``POLLHUP``; ``SO_ERROR`` is 111,
# ``ECONNREFUSED`` on Linux, and reading it clears it: the second read
# returns 0. (``asyncio`` does exactly this, and raises
# ``ConnectionRefusedError``.) The packets are the same two.
socklab.show(run_nonblocking.results(), run_nonblocking.trace())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
import errno  # noqa: E402

run.expect(
    calls={"client: connect()": "ECONNREFUSED"},
    flow=["client [S]", "server [R.]"],
    packets={1: {"flags": "R.", "seq": 0, "ack": 1}},
    states={"before connect": {"client": None}, "after connect": {"client": None}},
)
assert took_ms < 1000, "the page says connect() failed at once, not after a timeout"
run_nonblocking.expect(
    calls={"client: connect()": "EINPROGRESS", "client: poll(POLLOUT)": "POLLOUT|POLLERR|POLLHUP",
           "client: getsockopt(SO_ERROR)": errno.ECONNREFUSED, "client: SO_ERROR again": 0},
    flow=["client [S]", "server [R.]"],
)
assert errno.ECONNREFUSED == 111, "the page names the number 111"
socklab.show(run.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset of this page with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``). Recorded as root only: elsewhere these claims
# are reported as unchecked.
#
# * ``NO_SOCKET``: a segment arrived for which no socket existed.
#
# The table below is the kernel's own account of the first of these runs:
# every state change of its sockets (the brief ones too); every reset sent,
# with the kernel's reason and the state of the socket that sent it where one
# did, and every reset taken; any segment the kernel dropped; and the TCP
# counters of the run's namespace that moved. Recorded as root only, like the
# reasons.
run.expect(resets=[('no socket', 'NO_SOCKET')])
run_nonblocking.expect(resets=[('no socket', 'NO_SOCKET')])
socklab.show(run.events())

# %%
# .. admonition:: References
#
#    ``connect(2)`` (``ECONNREFUSED``: "A connect() on a stream socket found no one
#    listening on the remote address"; ``EINPROGRESS``: "The socket is nonblocking and
#    the connection cannot be completed immediately ... After select(2) indicates
#    writability, use getsockopt(2) to read the SO_ERROR option"), ``socket(7)``
#    (``SO_ERROR``: "Get and clear the pending socket error"), ``tcp(7)``; RFC 9293
#    section 3.5.2 (reset generation: a segment for a connection that does not exist
#    draws a reset; "If the incoming segment has no ACK field, the reset has sequence
#    number zero and the ACK field is set to the sum of the sequence number and segment
#    length of the incoming segment").
