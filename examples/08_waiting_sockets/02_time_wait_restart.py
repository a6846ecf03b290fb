"""
TIME-WAIT and the restarted server
==================================

The side that sends the first FIN ends in ``TIME-WAIT``, client or server,
and on Linux it stays there a fixed 60 seconds, whatever
``tcp_fin_timeout`` says. While a server's ``TIME-WAIT`` socket holds port
4321, a restarted server's ``bind()`` to that port fails with
``EADDRINUSE``; with ``SO_REUSEADDR`` it succeeds, but only if the socket
that left the ``TIME-WAIT`` behind had ``SO_REUSEADDR`` too.
"""

# %%
# Who gets TIME-WAIT
# ------------------
# Two connections to one listener. On the first, the client closes first;
# on the second, the server does. Each time the other side reads the end of
# file and closes as well, so both connections end in the ordinary way: a FIN
# from each side, each acknowledged. The run also sets
# ``net.ipv4.tcp_fin_timeout`` to 1 second in its own namespace, to show
# that it does not shorten ``TIME-WAIT``. The client's first connection
# gets port 50000, its second 50001: the tables tell the sockets apart by
# those ports (``server:50001`` is the server's side of the second
# connection).
import socket

import socklab

PORT = 4321
FIN_TIMEOUT = "net.ipv4.tcp_fin_timeout"


def end_connection(lab, first, second):
    """`first` closes; `second` reads the end of file and closes; wait for TIME-WAIT."""
    lab.call(first.close, label="close(), first")
    lab.wait_state(first, "FIN_WAIT2")
    lab.call(second.recv, 100, label="recv")
    lab.call(second.close, label="close(), second")
    lab.wait_state(first, "TIME_WAIT")
    lab.wait_state(second, None)


def who_gets_time_wait(lab):
    lab.sysctl(FIN_TIMEOUT, 1, required=False)  # (the run can go on without it)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(2)
    client_a = socket.create_connection(("127.0.0.1", PORT))
    server_a, _ = listener.accept()
    client_b = socket.create_connection(("127.0.0.1", PORT))
    server_b, _ = listener.accept()
    lab.snapshot("two connections")

    end_connection(lab, client_a, server_a)  # port 50000: the client closes first
    end_connection(lab, server_b, client_b)  # port 50001: the server closes first
    lab.snapshot("after both closed")


run = socklab.run(who_gets_time_wait)

# %%
# After both connections ended, two ``TIME-WAIT`` rows: the client of the
# first connection (port 50000: the client closed first) and the server of
# the second (peer port 50001: the server closed first). The other two
# sockets are gone: the side that *receives* the first FIN answers with its
# own, is freed by the ACK of it, and never enters ``TIME-WAIT``. The
# server's ``TIME-WAIT`` row holds the listener's port, 4321, as its local
# address. Read the ``Timer`` column: 60 seconds on both, although
# ``tcp_fin_timeout`` is 1 second in this namespace. Linux holds every
# ``TIME-WAIT`` for ``TCP_TIMEWAIT_LEN`` (``include/net/tcp.h``: ``(60*HZ)``),
# a constant, not RFC 9293's 2 MSL (4 minutes with its MSL of 2 minutes).
socklab.show(run.states())

# %%
# The trace: each connection's two FINs and their ACKs, the client's FIN
# first on the first connection (port 50000), the server's first on the
# second (port 50001).
socklab.show(run.trace())

# %%
# The server restarts
# -------------------
# A server that closes first (an HTTP server closing a connection it
# served, say) leaves ``TIME-WAIT`` sockets on its own port. Here the old
# server serves one connection, closes it first, and exits (its listener
# closed). The new server then binds to the same port, first without
# ``SO_REUSEADDR``, then with it. The run is made twice: with an old server
# that did not set ``SO_REUSEADDR`` on its listener, and with one that did
# (the accepted socket, and the ``TIME-WAIT`` it leaves, inherit the
# listener's setting).


def restart(old_reuseaddr):
    def restart_server(lab):
        old = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        old.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(old_reuseaddr))
        old.bind(("127.0.0.1", PORT))
        old.listen(1)
        client = socket.create_connection(("127.0.0.1", PORT))
        served, _ = old.accept()
        end_connection(lab, served, client)
        lab.call(old.close, label="close(), old listener")
        lab.snapshot("old server gone")

        new = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lab.call(new.bind, ("127.0.0.1", PORT), label="bind(), no SO_REUSEADDR", by="new server")
        new.close()
        new = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        new.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lab.call(new.bind, ("127.0.0.1", PORT), label="bind(), SO_REUSEADDR", by="new server")
        if new.getsockname()[1]:  # bound (an unbound socket has port 0): start listening
            lab.call(new.listen, 1, label="listen()", by="new server")
        lab.snapshot("new server")

    restart_server.__name__ = f"restart_old_reuseaddr_{int(old_reuseaddr)}"
    return restart_server


without = socklab.run(restart(False))
with_reuse = socklab.run(restart(True))

# %%
# In both runs the old server's socket is in ``TIME-WAIT`` on port 4321, and
# a ``bind()`` without ``SO_REUSEADDR`` fails with ``EADDRINUSE``: "Address
# already in use". With ``SO_REUSEADDR`` the outcome depends on the old
# server. If it did not set the option, the new server's ``bind()`` fails all
# the same (first table below); if it did, the ``bind()`` and ``listen()``
# succeed, and the new listener sits beside the ``TIME-WAIT`` (second). With
# ``SO_REUSEADDR`` (``SO_REUSEPORT`` has rules of its own), the kernel lets a
# ``bind()`` share a port with a ``TIME-WAIT`` socket only when both sockets
# asked for it, which in practice means: the server program sets
# ``SO_REUSEADDR`` on its listener, every time it starts.
socklab.show(without.states(), without.results())
socklab.show(with_reuse.states(), with_reuse.results())

# %%
# The second run as a ladder: the server's ``FIN-ACK`` goes first, so the
# server's lifeline ends in ``TIME-WAIT``, the client's in ``CLOSED``.
socklab.show(with_reuse.ladder())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
TIME_WAIT = {"state": "TIME_WAIT", "timer": "timewait"}
HANDSHAKE = ["client [S]", "server [S.]", "client [.]"]
run.expect(
    values={FIN_TIMEOUT: "1"},
    flow=HANDSHAKE * 2 + ["client [F.]", "server [.]", "server [F.]", "client [.]",
                          "server [F.]", "client [.]", "client [F.]", "server [.]"],
    packets={6: {"flags": "F.", "sport": 50000}, 10: {"flags": "F.", "sport": PORT, "dport": 50001}},
    states={
        "two connections": {"client:50000": "ESTABLISHED", "server:50000": "ESTABLISHED",
                            "client:50001": "ESTABLISHED", "server:50001": "ESTABLISHED"},
        "after both closed": {"client": {**TIME_WAIT, "local": "127.0.0.1:50000"},
                              "server": {**TIME_WAIT, "local": f"127.0.0.1:{PORT}", "peer": "127.0.0.1:50001"}},
    },
)
assert len(run.states_at("after both closed")) == 3, "the page says only the listener and two TIME-WAITs are left"
for who in ("client", "server"):  # (the timer counts down from 60 s: the snapshot may come seconds later, under load)
    row = run.states_at("after both closed")[who]
    assert 55_000 <= (row.timer_ms or 0) <= 60_000, f"the page says {who}'s TIME-WAIT lasts 60 s: {row.timer}"
OLD_SERVER_GONE = {"old server gone": {"listener": None, "server": TIME_WAIT}}
without.expect(
    calls={"new server: bind(), no SO_REUSEADDR": "EADDRINUSE", "new server: bind(), SO_REUSEADDR": "EADDRINUSE"},
    states={**OLD_SERVER_GONE, "new server": {"listener": None, "server": TIME_WAIT}},
)
with_reuse.expect(
    calls={"new server: bind(), no SO_REUSEADDR": "EADDRINUSE", "new server: bind(), SO_REUSEADDR": None,
           "new server: listen()": None},
    states={**OLD_SERVER_GONE, "new server": {"listener": {"state": "LISTEN", "local": f"127.0.0.1:{PORT}"},
                                              "server": TIME_WAIT}},
    flow=HANDSHAKE + ["server [F.]", "client [.]", "client [F.]", "server [.]"],
)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``socket(7)``: ``SO_REUSEADDR`` ("Indicates that the rules used in
#    validating addresses supplied in a bind(2) call should allow reuse of
#    local addresses. For AF_INET sockets this means that a socket may bind,
#    except when there is an active listening socket bound to the address");
#    ``bind(2)`` (``EADDRINUSE``: "The given address is already in use");
#    ``tcp(7)`` (``tcp_fin_timeout``); RFC 9293 section 3.3.2 (the state
#    diagram: the active closer passes through TIME-WAIT) and section 3.6.1
#    ("the TIME-WAIT state ... 2 MSL"); Linux ``include/net/tcp.h``:
#    ``#define TCP_TIMEWAIT_LEN (60*HZ) /* how long to wait to destroy
#    TIME-WAIT state, about 60 seconds */``.
