"""
Socketpair: send after the peer closed
======================================

Close one end of a Unix stream socketpair, and ``send()`` on the other end
fails at once with ``EPIPE``. No packet is involved: the kernel holds both
sockets and marks the survivor as shut down the moment its peer is closed.
"""

# %%
# The scenario
# ------------
# The seed's ``test_socketpair()`` in Python: ``socketpair(AF_UNIX,
# SOCK_STREAM)``, close ``pair[0]``, send one byte on ``pair[1]`` with
# ``MSG_NOSIGNAL`` (so no ``SIGPIPE``, only the error). Unix sockets have no
# addresses here, so ``lab.name`` gives them the seed's names for the tables.
# ``lab.wait_poll`` asks ``poll()`` what ``pair[1]`` is ready for; with a
# timeout of 0 it only looks, it does not wait.
import select
import socket

import socklab

EVENTS = select.POLLIN | select.POLLOUT | select.POLLRDHUP


def socketpair_send(lab):
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    lab.name(pair[0], "pair[0]")
    lab.name(pair[1], "pair[1]")
    lab.snapshot("before close on pair[0]")
    lab.wait_poll(pair[1], EVENTS, timeout=0, label="poll() before")

    lab.call(pair[0].close, label="close()")
    lab.snapshot("after close on pair[0]")
    lab.wait_poll(pair[1], EVENTS, timeout=0, label="poll() after")

    lab.call(pair[1].send, b"a", socket.MSG_NOSIGNAL, label="send(b'a')")
    lab.call(pair[1].recv, 1, label="recv(1)")


run = socklab.run(socketpair_send)

# %%
# Socket states
# -------------
# Before the close, ``ss -x`` shows two connected (``ESTAB``) stream sockets,
# each naming the other's inode as its peer. After ``close(pair[0])``,
# ``pair[0]`` is gone and ``pair[1]`` is still listed as ``ESTAB``, but its peer
# column is now ``*``: the kernel reports no peer inode for it any more. Unix
# sockets have no FIN, no ``CLOSE-WAIT``: the state column does not change, the
# peer simply disappears. The note under the second table names the one socket
# that went away, ``pair[0]``.
socklab.show(run.states())

# %%
# Call results
# ------------
# Notice the ``send()``: ``EPIPE``, at once, with nothing on any wire. When
# ``pair[0]`` was closed the kernel marked ``pair[1]`` as shut down in both
# directions, so ``send()`` fails and ``recv()`` returns ``b''`` (end of file).
# ``poll()`` says so too: before the close only ``POLLOUT``; after it
# ``POLLIN|POLLOUT|POLLHUP|POLLRDHUP``. ``POLLHUP`` ("hang up") is what a TCP
# socket does *not* report when its peer closes (see
# :ref:`sphx_glr_auto_examples_02_close_04_detect_fin.py`): a TCP peer's FIN
# only says the peer will send no more.
socklab.show(run.results())

# %%
# When ``pair[0]`` had unread data
# --------------------------------
# The same, except that ``pair[1]`` first sends a byte that ``pair[0]`` never
# reads. Closing a socket with unread data has a visible effect on the
# survivor: ``send()`` still fails with ``EPIPE``, but the first ``recv()``
# reports ``ECONNRESET`` (the data was lost), and only the next one returns
# ``b''``. This is the Unix-socket cousin of TCP's reset on close with unread
# data (see :ref:`sphx_glr_auto_examples_02_close_03_exit_without_close.py`).


def socketpair_unread(lab):
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    lab.name(pair[0], "pair[0]")
    lab.name(pair[1], "pair[1]")
    lab.call(pair[1].send, b"x", label="send(b'x')")
    lab.call(pair[0].close, label="close() with b'x' unread")
    lab.call(pair[1].send, b"a", socket.MSG_NOSIGNAL, label="send(b'a')")
    lab.call(pair[1].recv, 1, label="recv(1) #1")
    lab.call(pair[1].recv, 1, label="recv(1) #2")
    lab.snapshot("at the end")


unread = socklab.run(socketpair_unread)
socklab.show(unread.results())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke. Each socket's peer column
# names the other's inode (its ``Local Address`` column) before the close, and
# ``pair[1]``'s says ``*`` after it.
paired = run.states_at("before close on pair[0]")
run.expect(
    calls={
        "pair[1]: poll() before": "POLLOUT",
        "pair[1]: poll() after": "POLLIN|POLLOUT|POLLHUP|POLLRDHUP",
        "pair[1]: send(b'a')": "EPIPE",
        "pair[1]: recv(1)": b"",
    },
    flow=[],
    states={
        "before close on pair[0]": {
            "pair[0]": {"state": "ESTABLISHED", "peer": paired["pair[1]"].local},
            "pair[1]": {"state": "ESTABLISHED", "peer": paired["pair[0]"].local},
        },
        "after close on pair[0]": {"pair[0]": None,
                                   "pair[1]": {"state": "ESTABLISHED", "peer": "*"}},
    },
)
unread.expect(
    calls={
        "pair[1]: send(b'a')": "EPIPE",
        "pair[1]: recv(1) #1": "ECONNRESET",
        "pair[1]: recv(1) #2": b"",
    },
    flow=[],
    states={"at the end": {"pair[0]": None, "pair[1]": "ESTABLISHED"}},
)
# For the site's "what happens when" matrix: the close of one end, then the
# other end's send and receive.
run.summarize(closer="pair[0]: close()", sends=["pair[1]: send(b'a')"],
              recv="pair[1]: recv(1)")
unread.summarize(closer="pair[0]: close() with b'x' unread", sends=["pair[1]: send(b'a')"],
                 recv="pair[1]: recv(1) #1")
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``unix(7)`` (``EPIPE``: "Remote socket was closed on a stream socket. If
#    enabled, a SIGPIPE is sent as well"; ``ECONNRESET``: "Remote socket was
#    unexpectedly closed"), ``send(2)`` (``MSG_NOSIGNAL``), ``socketpair(2)``,
#    ``poll(2)`` (``POLLHUP``, ``POLLRDHUP``), ``socket(7)``.
