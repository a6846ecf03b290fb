"""
IPv6, addresses from getaddrinfo()
==================================

The seed's central scenario over IPv6 (``::1``), with every address taken
from ``getaddrinfo()``: the server's first ``send()`` returns 1 and draws an
RST, the second, made once that RST is back, fails with ``EPIPE``, exactly
as over IPv4 (the rule for which ``send()`` fails is on the
:ref:`central page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`).
The same code, given ``127.0.0.1``, produces the same packets.
"""

# %%
# Code that does not assume IPv4
# ------------------------------
# A reader pointed out that the seed's program asks for ``AF_INET`` and then
# assumes every address is a ``sockaddr_in``, which "is likely to break
# sometime in the future". The portable shape takes the family, socket type,
# protocol and address from each ``getaddrinfo()`` result and hands the
# address back unchanged. In Python the trap has another form: an IPv4
# address is a 2-tuple ``(host, port)``, an IPv6 address a 4-tuple
# ``(host, port, flowinfo, scope_id)``, so ``host, port = addr`` works for
# one family and raises for the other.
import socket

import socklab

PORT = 4321


def listen_on(host, port):
    """Listen on the first address getaddrinfo() gives that works, any family."""
    error = OSError(f"getaddrinfo({host!r}) returned no address")
    for family, type_, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(1)
            return sock
        except OSError as e:
            error = e
            sock.close()
    raise error


def connect_to(host, port):
    """Connect to the first address getaddrinfo() gives that answers, any family."""
    error = OSError(f"getaddrinfo({host!r}) returned no address")
    for family, type_, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, type_, proto)
        try:
            sock.connect(address)
            return sock
        except OSError as e:
            error = e
            sock.close()
    raise error


def close_then_send(lab, host):
    listener = listen_on(host, PORT)
    client = connect_to(host, PORT)
    server, _ = listener.accept()
    lab.call(server.getpeername, label="getpeername()")
    lab.snapshot("before close on client")

    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")  # ... and the client's kernel took the ACK in
    lab.snapshot("after close on client")

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_packet("R")  # the client's kernel answers with a reset
    lab.wait_state(client, None)
    lab.wait_state(server, None)  # ... and the server's kernel took it in
    lab.snapshot("after send on server")

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #2")


run = socklab.run(lambda lab: close_then_send(lab, "::1"), name="ipv6")

# %%
# Socket states
# -------------
# The seed's three moments, with IPv6 addresses (``ss`` writes them in
# brackets, ``[::1]:4321``). The states are the IPv4 ones: ``FIN-WAIT-2``
# and ``CLOSE-WAIT`` (``Recv-Q`` 1) after the close, nothing after the send.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``getpeername()`` returns the 4-tuple of an IPv6 address. The first
# ``send()`` returns 1, the second fails with ``EPIPE``.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# ``IP6`` lines, and otherwise the seed's sequence: handshake, the client's
# ``[F.]``, the server's ``[.]``, its byte ``[P.]``, the client's ``[R]``.
# The MSS is 65476, against 65495 over IPv4: ``lo``'s MTU is 65536, the IPv6
# header takes 40 bytes of it where IPv4 takes 20, but an IPv4 packet can
# be at most 65535 bytes long.
socklab.show(run.trace())

# %%
# The ladder diagram of the IPv6 run: the addresses under the two names are
# ``[::1]`` ones, and the rest is the picture of the
# :ref:`close() page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`,
# arrow for arrow: the blue ``FIN-ACK``, the server's ``PSH-ACK`` with its
# byte, the red ``RST``, and ``EPIPE`` for the second ``send()``.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# the IPv6 run. The state machine knows no address family, and the paths
# are those of the
# :ref:`close() page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`.
# The states are the ones the tables show: both ``ESTABLISHED``; the client
# in ``FIN-WAIT-2`` and the server in ``CLOSE-WAIT``; then neither in the
# table (``CLOSED``). Between the first two, the client passed through
# ``FIN-WAIT-1``, too brief for a snapshot: it lasts from the client's FIN
# until the server's ACK of it. The last step leaves the figure (dashed):
# the client, closed, answers the server's byte with a reset (``rcv data
# after close()``), and the server's ``CLOSE-WAIT`` ends on that reset
# (``rcv RST``), not by its own ``close()``. The ``run.expect`` in this cell
# checks those states, the data and the reset against the run.
CLIENT_PATH = ["ESTABLISHED", "FIN_WAIT2", "rcv data after close()"]
SERVER_PATH = ["ESTABLISHED", "CLOSE_WAIT", "rcv RST"]
run.expect(
    states={
        "before close on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after close on client": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after send on server": {"client": None, "server": None},
    },
    packets={5: {"flags": "P.", "ip": "IP6"}, 6: {"flags": "R", "ip": "IP6"}},  # the data, the reset
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(CLIENT_PATH),
    "server": socklab.state_path(SERVER_PATH),
}))

# %%
# The same code over IPv4
# -----------------------
# Only the host string changes. ``getpeername()`` now returns a 2-tuple;
# the sends return 1, then ``EPIPE``, as over IPv6.
run_v4 = socklab.run(lambda lab: close_then_send(lab, "127.0.0.1"), name="ipv4")
socklab.show(run_v4.results())

# %%
# ``IP`` lines, the same seven packets.
socklab.show(run_v4.trace())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
CLOSE_THEN_SEND = ["client [S]", "server [S.]", "client [.]", "client [F.]",
                   "server [.]", "server [P.]", "client [R]"]
STATES = {
    "after close on client": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)},
    "after send on server": {"client": None, "server": None},
}
run.expect(
    calls={"server: getpeername()": ("::1", 50000, 0, 0), "server: send #1": 1,
           "server: send #2": "EPIPE"},
    flow=CLOSE_THEN_SEND,
    states=STATES,
    resets=[("client", "TCP_TIMEWAIT_SOCKET")],  # the kernel's reason, as over IPv4
)
run_v4.expect(
    calls={"server: getpeername()": ("127.0.0.1", 50000), "server: send #1": 1,
           "server: send #2": "EPIPE"},
    flow=CLOSE_THEN_SEND,
    states=STATES,
)
# Every packet is IP6 in one run, IP in the other; both SYNs (the first two
# packets) carry the MSS the page names.
for checked, ip, mss in ((run, "IP6", 65476), (run_v4, "IP", 65495)):
    packets = {i: {"ip": ip} for i in range(len(CLOSE_THEN_SEND))}
    packets[0]["mss"] = packets[1]["mss"] = mss  # the two SYNs
    checked.expect(packets=packets)
run.summarize(closer="client: close()", sends=["server: send #1", "server: send #2"])
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``getaddrinfo(3)`` (loop over the results, use ``ai_family``, ``ai_socktype``,
#    ``ai_protocol``, ``ai_addr``), ``ipv6(7)`` (``struct sockaddr_in6``: flow info and
#    scope id), ``socket(7)``, ``send(2)`` (``EPIPE``, ``MSG_NOSIGNAL``), ``tcp(7)``;
#    RFC 9293 section 3.6.1 (new data received after CLOSE: a reset SHOULD be sent;
#    the kernel's reason, checked above, is ``TCP_TIMEWAIT_SOCKET``).
