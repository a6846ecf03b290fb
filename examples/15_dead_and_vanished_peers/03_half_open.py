"""
Half-open: the server's host came back
======================================

The server's host went away and came back without its sockets (a reboot, a
crashed virtual machine restarted, a NAT box that forgot the connection): the
client still holds an ``ESTABLISHED`` socket for a connection the other end
no longer knows. Nothing happens until one side sends. The client's next
``send()`` succeeds; the server's kernel, which has no socket for those
addresses, answers with an RST, and the client's next ``recv()`` fails with
``ECONNRESET``. If what arrives first from the server's host is a SYN
instead, the client's kernel does not believe it: it answers with a
"challenge ACK" (RFC 5961), and the reset that comes back for *that* ends
the connection; so does a reset that is not quite at the expected
sequence number. Three runs, one per way back.
"""

# %%
# The server's host vanishes and comes back
# -----------------------------------------
# Two hosts, 10 ms apart, an established connection. Then the link is cut,
# and while it is cut the server's program aborts its connection
# (``SO_LINGER {1, 0}``: ``close()`` sends an RST instead of a FIN and frees
# the socket at once) and closes its listener: its RST is lost on the cut
# link, so the client hears nothing, as if the host had lost power. The link
# is restored: the server's host is back, with no socket for this
# connection, and no program listening.
import socket
import struct

import socklab

PORT = 4321
REQUEST = b"hello"


def connected(lab):
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    return listener, client, server


def server_host_vanishes_and_returns(lab, listener, server):
    lab.link.cut()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    lab.call(server.close, label="close(), SO_LINGER {1, 0}, link cut")
    listener.close()
    lab.link.wait_packet("R.", sender="server", fate="cut")  # its reset never arrives
    lab.link.restore()
    lab.snapshot("the server's host is back")


def half_open(lab):
    listener, client, server = connected(lab)
    server_host_vanishes_and_returns(lab, listener, server)

    lab.call(client.send, REQUEST, label="send()")
    lab.wait_packet("R", sport=PORT)  # the server's kernel answers with a reset
    lab.wait_state(client, None)  # ... which ended the client's socket
    lab.snapshot("after send()")
    lab.call(client.recv, 1024, label="recv()")
    lab.call(client.recv, 1024, label="recv() again")
    lab.call(client.send, REQUEST, socket.MSG_NOSIGNAL, label="send() again")


run = socklab.run(half_open, wire=socklab.Wire(delay=0.010))

# %%
# Socket states
# -------------
# Connected, then, with the server's host back, a table with one socket: the
# client's, still ``ESTAB``, for a connection only it remembers. That is
# what half-open means (RFC 9293 section 3.5.1). After the ``send()`` it is
# gone too.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``send()`` returns 5: the kernel took the bytes; it cannot know yet. The
# next ``recv()`` fails with ``ECONNRESET`` ("Connection reset by peer"):
# the reset arrived on an established connection (``tcp_reset()`` chooses
# the errno by state). The error is reported once: the next ``recv()``
# returns ``b''``, and a ``send()`` fails with ``EPIPE``.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The handshake; the server's ``[R.]``, lost on the cut link; then the
# client's data ``[P.]`` and the ``[R]`` that answers it. That reset comes
# from no socket: the server's kernel found nothing for these addresses and
# answered for the host, taking its sequence number from the data's
# acknowledgment number (RFC 9293 section 3.5.2), which is exactly what the
# client expects next, so the client accepts it.
socklab.show(run.trace())

# %%
# The ladder: the lost reset stops at the cut; the data crosses the link
# and the reset comes straight back.
socklab.show(run.ladder())

# %%
# The kernel's account
# --------------------
# Two resets. The server's own, when its program aborted the connection
# (reason ``TCP_STATE``: ``tcp_disconnect()`` resets a connection in a
# state that needs it, here an established one closed with
# ``SO_LINGER {1, 0}``), lost. And the one that reached the client, sent by no socket, reason
# ``NO_SOCKET`` ("no valid socket that can be used", in
# ``include/net/rstreason.h``). The client's socket takes it in
# ``TCP_ESTABLISHED`` and closes.
socklab.show(run.events())

# %%
# A SYN first: the challenge ACK
# ------------------------------
# The same vanishing and return. This time the first segment from the
# server's host is a SYN for the same addresses and ports, as when a host
# that lost its connections opens a new one from the same port (a client
# host that rebooted does so with the same few ephemeral ports; peers
# connect to each other). The scripted peer (``lab.net.forge``) sends it
# from the server's address, with a sequence number of its own. The client
# waits in ``recv()`` meanwhile, with a timeout of 5 s.


def challenge_ack(lab):
    listener, client, server = connected(lab)
    synack = lab.link.wait_packet("S.", sender="server").packet  # numbers are absolute here
    server_host_vanishes_and_returns(lab, listener, server)
    client.settimeout(5)

    lab.net.forge(lab.server, "S", sport=PORT, dport=client.getsockname()[1], seq=synack.seq + 1_000_000)
    lab.wait_packet("R", sport=PORT)  # the reset the challenge ACK drew
    lab.wait_state(client, None)
    lab.snapshot("after the SYN")
    lab.call(client.recv, 1024, label="recv()")


challenged = socklab.run(challenge_ack, wire=socklab.Wire(delay=0.010))

# %%
# The forged ``[S]`` is marked in the trace. The client's kernel does not
# reset its connection for a SYN, nor start a new one: RFC 5961 section 4
# asks a host to answer any SYN on a synchronized connection with an ACK
# carrying its own current numbers (``ack 1``: the next byte it expects),
# the challenge ACK. A peer that still had the connection would take it as
# a duplicate ACK and nothing would change; an attacker who guessed the
# ports but not the numbers learns nothing. The server's host has no
# socket, so it answers the ACK with an ``[R]`` whose sequence number is
# that ``ack``: exactly the next sequence number the client expects, the
# only one a reset may carry to be taken at once (RFC 5961 section 3.2).
# The connection ends there, and ``recv()`` fails with ``ECONNRESET``.
socklab.show(challenged.states("after the SYN"), challenged.results(), challenged.trace())

# %%
# The kernel's account: the SYN is dropped (reason ``TCP_INVALID_SYN``)
# after ``tcp_validate_incoming()`` sent the challenge ACK; the counters
# ``TcpExtTCPSYNChallenge`` and ``TcpExtTCPChallengeACK`` count it on the
# client's host; then the ``NO_SOCKET`` reset, taken in ``TCP_ESTABLISHED``.
socklab.show(challenged.events())
socklab.show(challenged.ladder())

# %%
# Resets first: one ignored, one challenged
# -----------------------------------------
# A reset is checked the same way. The same vanishing and return; then the
# scripted peer sends two RSTs from the server's address: one with a
# sequence number far outside the client's receive window (as a blind
# attacker's guess mostly is), then one inside the window but not exactly
# at the next expected byte (1000 bytes past it).


def challenged_resets(lab):
    listener, client, server = connected(lab)
    synack = lab.link.wait_packet("S.", sender="server").packet
    server_host_vanishes_and_returns(lab, listener, server)
    client.settimeout(5)

    next_expected = synack.seq + 1  # the client's RCV.NXT: nothing was sent after the handshake
    lab.net.forge(lab.server, "R", sport=PORT, dport=client.getsockname()[1], seq=next_expected + 2**30)
    lab.net.forge(lab.server, "R", sport=PORT, dport=client.getsockname()[1], seq=next_expected + 1000)
    lab.wait_packet("R", sport=PORT, after=2)  # the reset the challenge ACK drew
    lab.wait_state(client, None)
    lab.call(client.recv, 1024, label="recv()")


resets_first = socklab.run(challenged_resets, wire=socklab.Wire(delay=0.010))

# %%
# The first forged ``[R]`` draws nothing: outside the window, it is dropped
# without an answer (RFC 5961 section 3.2). The second, inside the window,
# draws a challenge ACK, exactly as the SYN did; the server's host answers
# it with the ``NO_SOCKET`` reset at the right number, and that one ends the
# connection. A guessed reset cannot end a connection that is alive; a real
# peer that lost the connection still can, one round trip later.
socklab.show(resets_first.results(), resets_first.trace())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
HANDSHAKE_THEN_LOST_RESET = ["client [S]", "server [S.]", "client [.]", "server [R.]"]
run.expect(
    calls={"server: close(), SO_LINGER {1, 0}, link cut": None, "client: send()": len(REQUEST),
           "client: recv()": "ECONNRESET", "client: recv() again": b"", "client: send() again": "EPIPE"},
    flow=[*HANDSHAKE_THEN_LOST_RESET, "client [P.]", "server [R]"],
    packets={3: {"fate": "cut"}, 5: {"flags": "R", "seq": run.packets[4].ack, "fate": "delivered"}},
    states={"the server's host is back": {"client": "ESTAB", "server": None, "listener": None},
            "after send()": {"client": None}},
    resets=[("server", "TCP_STATE"), ("no socket", "NO_SOCKET")],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE"],
                 "server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE"]},
)
challenged.expect(
    calls={"client: recv()": "ECONNRESET"},
    flow=[*HANDSHAKE_THEN_LOST_RESET, "server [S]", "client [.]", "server [R]"],
    packets={4: {"flags": "S", "fate": "injected"},
             5: {"flags": ".", "ack": 1, "length": 0},  # the challenge ACK: the client's own numbers
             6: {"flags": "R", "seq": 1, "fate": "delivered"}},  # its ack, as the reset's seq
    states={"after the SYN": {"client": None}},
    resets=[("server", "TCP_STATE"), ("no socket", "NO_SOCKET")],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE"]},
    counters={"client:TcpExtTCPChallengeACK": 1, "client:TcpExtTCPSYNChallenge": 1},
)
resets_first.expect(
    calls={"client: recv()": "ECONNRESET"},
    flow=[*HANDSHAKE_THEN_LOST_RESET, "server [R]", "server [R]", "client [.]", "server [R]"],
    packets={4: {"fate": "injected", "seq": 2**30 + 1}, 5: {"fate": "injected", "seq": 1001},
             6: {"flags": ".", "ack": 1}, 7: {"flags": "R", "seq": 1, "fate": "delivered"}},
    resets=[("server", "TCP_STATE"), ("no socket", "NO_SOCKET")],
    counters={"client:TcpExtTCPChallengeACK": 1},
)
run.summarize(closer="server: close(), SO_LINGER {1, 0}, link cut",
              sends=["client: send()", "client: send() again"], recv="client: recv()")
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``recv(2)`` and ``send(2)`` (``ECONNRESET``, ``EPIPE``), ``socket(7)``
#    (``SO_LINGER``); RFC 9293 section 3.5.1 ("An established connection is said
#    to be 'half-open' if one of the TCP peers has closed or aborted the connection
#    at its end without the knowledge of the other, or if the two ends of the
#    connection have become desynchronized owing to a failure or reboot that
#    resulted in loss of memory"), section 3.5.2 (reset
#    generation); RFC 5961 sections 3.2 (an RST is accepted only at exactly
#    RCV.NXT; in the window otherwise, a challenge ACK) and 4 (a SYN on a
#    synchronized connection: a challenge ACK); the kernel's
#    ``net/ipv4/tcp_input.c`` (``tcp_validate_incoming()``,
#    ``tcp_send_challenge_ack()``), ``include/net/rstreason.h`` (``NO_SOCKET``,
#    ``TCP_STATE``), ``include/net/dropreason-core.h`` (``TCP_INVALID_SYN``).
