"""
Out of ephemeral ports
======================

A client's ``connect()`` picks its local port from the ephemeral range, and a
port whose last connection to the same server is in ``TIME-WAIT`` is not free:
when every port in the range is held that way, ``connect()`` fails with
``EADDRNOTAVAIL``, "Cannot assign requested address", and goes on failing for
the 60 s of ``TIME-WAIT``. With ``net.ipv4.tcp_tw_reuse`` the kernel may hand
out such a port again once its ``TIME-WAIT`` is older than 1 s; on loopback
it does so by default.
"""

# %%
# The scenario
# ------------
# A range of one port makes the exhaustion quick: each client socket gets the
# range 50000-50000 with the ``IP_LOCAL_PORT_RANGE`` socket option (Linux 6.3
# and later; option 51 in ``linux/in.h``, which Python's ``socket`` module
# does not name yet). The first client connects and closes first, so its
# port ends in ``TIME-WAIT``; a second client, on the same one-port range,
# then tries to connect. Before that try the run sets
# ``net.ipv4.tcp_tw_reuse`` to 0 in its own network namespace (``lab.sysctl``
# never writes the host's: a run without a namespace of its own stops
# there): the default, 2, allows reuse for loopback connections only, which
# would hide the failure here, as it does not between two hosts. Then it
# sets 1 and the second client retries until its
# ``connect()`` succeeds, with a deadline of 3 s and a 10 ms pause between
# tries (no fixed wait for the second to pass): how long that took is
# measured, not assumed.
import socket
import struct
import time

import socklab

PORT = 4321
IP_LOCAL_PORT_RANGE = getattr(socket, "IP_LOCAL_PORT_RANGE", 51)
ONE_PORT = struct.pack("I", 50000 | 50000 << 16)  # low 16 bits: first port, high: last
TW_REUSE = "net.ipv4.tcp_tw_reuse"
TW_REUSE_DELAY = "net.ipv4.tcp_tw_reuse_delay"


def client_socket(lab, label):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lab.call(sock.setsockopt, socket.IPPROTO_IP, IP_LOCAL_PORT_RANGE, ONE_PORT,
             label=f"setsockopt(IP_LOCAL_PORT_RANGE, 50000-50000), {label}", by="client")
    return sock


def leave_time_wait(lab, listener):
    """One connection from port 50000 that the client closes first: its port ends in TIME-WAIT."""
    client = client_socket(lab, "first client")
    lab.call(client.connect, ("127.0.0.1", PORT), label="connect(), first client")
    server, _ = listener.accept()
    lab.call(client.close, label="close()")
    lab.wait_state(client, "FIN_WAIT2")
    lab.call(server.recv, 100, label="recv")
    lab.call(server.close, label="close()")
    lab.wait_state(client, "TIME_WAIT")
    lab.wait_state(server, None)
    lab.snapshot("port 50000 in TIME-WAIT")


def connect_until_reused(lab, deadline=3.0):
    """connect() from the one-port range until it succeeds or `deadline` s pass; return the socket."""
    start = time.monotonic()
    tries = 0
    while True:
        tries += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_LOCAL_PORT_RANGE, ONE_PORT)
        if sock.connect_ex(("127.0.0.1", PORT)) == 0:
            lab.record("failed tries before the port was reused", tries - 1)
            return sock
        sock.close()
        if time.monotonic() - start > deadline:
            raise TimeoutError(f"connect() still failed after {tries} tries in {deadline} s")
        time.sleep(0.01)  # pause between tries


def exhausted(reuse):
    def ports_exhausted(lab):
        lab.sysctl(TW_REUSE_DELAY)  # read, and recorded
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", PORT))
        listener.listen(4)
        leave_time_wait(lab, listener)

        lab.sysctl(TW_REUSE, 0)  # this namespace's /proc/sys/net/ipv4/tcp_tw_reuse
        second = client_socket(lab, "second client")
        lab.call(second.connect, ("127.0.0.1", PORT), label="connect(), tcp_tw_reuse 0")
        second.close()

        lab.sysctl(TW_REUSE, reuse)
        client = connect_until_reused(lab)
        server, _ = listener.accept()
        lab.wait_state(client, "ESTABLISHED")
        lab.snapshot(f"after tcp_tw_reuse {reuse}")

    ports_exhausted.__name__ = f"ports_exhausted_tw_reuse_{reuse}"
    return ports_exhausted


run = socklab.run(exhausted(1))

# %%
# Socket states
# -------------
# First the client's port 50000 in ``TIME-WAIT``, its timer at 60 s. After
# the reuse, the same port carries a new connection, ``ESTAB``, and the
# ``TIME-WAIT`` row is gone: the kernel ended it early to hand out its port.
socklab.show(run.states())

# %%
# Call results
# ------------
# The option call succeeds on this kernel (an older one refuses it with
# ``ENOPROTOOPT``). The first client's ``connect()`` returns, the second,
# with ``tcp_tw_reuse`` at 0, fails with ``EADDRNOTAVAIL``: no packet is
# sent, the kernel refuses before any SYN. Below the calls, the values the
# run recorded: the namespace's default ``tcp_tw_reuse`` (2) and
# ``tcp_tw_reuse_delay`` (1000 ms), and how many tries failed before the
# port was handed out again.
socklab.show(run.results())

# %%
# How long, measured
# ------------------
# The time from the packet that put port 50000 into ``TIME-WAIT`` (the
# client's ACK of the server's FIN, the last packet of the first connection)
# to the SYN of the connection that reused it, both on the capture's clock.
# The kernel reuses the port once the ``TIME-WAIT`` is older than
# ``tcp_tw_reuse_delay`` (1000 ms); the tries are 10 ms apart, and on a busy
# machine a try may come later, so the claim allows 1.0 to 1.5 s.
# Without ``tcp_tw_reuse`` the port would have stayed unusable for the whole
# of its ``TIME-WAIT``: 60 s (the timer in the first table).


def reused_after(run):
    """Seconds from the ACK that put port 50000 in TIME-WAIT to the SYN that reused the port."""
    syns = [p for p in run.packets if p.flags == "S"]
    last_ack = max((p for p in run.packets if p.time_ns < syns[1].time_ns and p.flags == "."),
                   key=lambda p: p.time_ns)
    return (syns[1].time_ns - last_ack.time_ns) / 1e9


time_wait = run.states_at("port 50000 in TIME-WAIT")["client"]
print(f"port 50000 entered TIME-WAIT, its timer showing {time_wait.timer_ms} ms")
with run.claim("with tcp_tw_reuse 1, port 50000 is reused 1.0 to 1.5 s after it entered TIME-WAIT"):
    after = reused_after(run)
    print(f"port 50000 reused {after:.3f} s after it entered TIME-WAIT; tries that failed first: "
          f"{run.value('failed tries before the port was reused')}")
    assert 1.0 <= after <= 1.5, f"it took {after:.3f} s"

# %%
# The trace: the first connection with its two FINs (the client's first),
# then a single SYN from port 50000, a second later: the second client's
# failed ``connect()`` sent nothing, nor did the tries that failed. (The last
# packets are the new connection's end, when the scenario returns and its
# sockets are closed.) Note the reused connection's first sequence number:
# the kernel starts it above the old connection's last one (the old
# ``snd_nxt`` plus 65535 plus 2), so that no segment of the old connection
# can be taken for one of the new.
socklab.show(run.trace())

# %%
# As a ladder: the first connection and its two FINs, a second's gap with
# nothing on the wire, and the new handshake from the same port.
socklab.show(run.ladder())

# %%
# The default, on loopback
# ------------------------
# The same run, but the second client's tries are made with
# ``tcp_tw_reuse`` back at the namespace's default, 2 ("enable for loopback
# traffic only"). On this loopback connection it reuses the port just the
# same. Between two hosts, 2 means no reuse: there, a client that opens and
# closes connections faster than ``TIME-WAIT`` ends gets ``EADDRNOTAVAIL``.
default = socklab.run(exhausted(2))
socklab.show(default.results())
with default.claim("with tcp_tw_reuse 2, port 50000 is reused 1.0 to 1.5 s after it entered TIME-WAIT"):
    after = reused_after(default)
    print(f"with tcp_tw_reuse 2, port 50000 reused {after:.3f} s after it entered TIME-WAIT")
    assert 1.0 <= after <= 1.5, f"it took {after:.3f} s"

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
FIRST = ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]", "server [F.]", "client [.]"]
REUSED = ["client [S]", "server [S.]", "client [.]"]
for r, reuse in ((run, 1), (default, 2)):
    r.expect(
        values={f"{TW_REUSE} before": "2", TW_REUSE_DELAY: "1000", TW_REUSE: str(reuse)},
        calls={"client: setsockopt(IP_LOCAL_PORT_RANGE, 50000-50000), first client": None,
               "client: setsockopt(IP_LOCAL_PORT_RANGE, 50000-50000), second client": None,
               "client: connect(), first client": None,
               "client: connect(), tcp_tw_reuse 0": "EADDRNOTAVAIL"},
        # the trace's sequence numbers are relative to the first connection's: the old snd_nxt (2) + 65537
        packets={7: {"flags": "S", "sport": 50000, "seq": 65539}},
        states={
            "port 50000 in TIME-WAIT": {"client": {"state": "TIME_WAIT", "local": "127.0.0.1:50000",
                                                   "timer": "timewait"}},
            f"after tcp_tw_reuse {reuse}": {"client": {"state": "ESTABLISHED", "local": "127.0.0.1:50000"},
                                            "server": "ESTABLISHED"},
        },
    )
    with r.claim("the first connection, its FINs, then the reused port's handshake, no reset"):
        assert r.flow()[:10] == FIRST + REUSED and not any("R" in p.flags for p in r.packets), r.flow()
    with r.claim("the first tries after setting tcp_tw_reuse still fail"):
        assert r.value("failed tries before the port was reused") > 0
with run.claim("TIME-WAIT's timer started at 60 s: it shows 60 s less at most the time since the server's close()"):
    # the client enters TIME-WAIT when the server's FIN arrives, after the server's close() began
    since_close = (run.snapshot("port 50000 in TIME-WAIT").time_ns - run.call("server: close()").start_ns) / 1e6
    assert 60_000 - since_close - 10 <= (time_wait.timer_ms or 0) <= 60_000, (
        f"the timer shows {time_wait.timer}, {since_close:.0f} ms after the server's close() began")
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``connect(2)`` (``EADDRNOTAVAIL``: "(Internet domain sockets) The socket
#    referred to by sockfd had not previously been bound to an address and,
#    upon attempting to bind it to an ephemeral port, it was determined that
#    all port numbers in the ephemeral port range are currently in use");
#    ``ip(7)`` (``ip_local_port_range``); Linux
#    ``Documentation/networking/ip-sysctl.rst``: ``tcp_tw_reuse`` ("Enable
#    reuse of TIME-WAIT sockets for new connections when it is safe from
#    protocol viewpoint. 0 - disable, 1 - global enable, 2 - enable for
#    loopback traffic only ... Default: 2") and ``tcp_tw_reuse_delay`` (the
#    delay, in milliseconds, before a TIME-WAIT socket may be reused,
#    "Default: 1000"); ``IP_LOCAL_PORT_RANGE``, added in Linux 6.3
#    (``include/uapi/linux/in.h``); RFC 9293 section 3.6.1 (TIME-WAIT).
