"""
Pipe: write after the reader closed
===================================

Once the reading end of a pipe is closed, ``write()`` on the writing end fails
at once with ``EPIPE``, and the kernel also sends the writer ``SIGPIPE``. When
that signal is ignored (as Python does) the error is all you see; at its
default action the signal kills the process before ``write()`` returns.
"""

# %%
# The scenario
# ------------
# The seed's ``test_pipe()`` in Python: make a pipe, close the reading end,
# write one byte. There is no explicit ``signal(SIGPIPE, SIG_IGN)`` here because
# Python already ignores ``SIGPIPE`` when it starts: ``lab.call`` records what
# ``signal.getsignal`` reports. ``lab.call`` also records the errno name when a
# call raises (``os.write`` raises ``BrokenPipeError``, errno ``EPIPE``).
import os
import signal

import socklab


def pipe_sigpipe_ignored(lab):
    lab.call(signal.getsignal, signal.SIGPIPE, label="signal.getsignal(SIGPIPE)")
    read_end, write_end = os.pipe()
    lab.call(os.close, read_end, label="close(read end)")
    lab.call(os.write, write_end, b"a", label="write(write end, b'a')")


run = socklab.run(pipe_sigpipe_ignored)

# %%
# Call results
# ------------
# Notice the first row: ``SIG_IGN``, the disposition Python set at start-up.
# The ``write()`` fails with ``EPIPE``, at once: there is nothing to wait for,
# because both ends of a pipe live in the same kernel, which knows the reader
# is gone.
socklab.show(run.results())

# %%
# With SIGPIPE at its default action
# ----------------------------------
# The seed's note from the man page, ``write(2)``: "the writing process will
# also receive a SIGPIPE signal". A C program that does not touch the signal
# gets the default action, which terminates the process. Here the scenario
# restores that default with ``signal.signal(SIGPIPE, SIG_DFL)`` and writes
# again. ``allow_signals=True`` tells ``socklab.run`` that this scenario's
# process is meant to die by a signal (it runs in a child process, so the
# program showing this page survives).


def pipe_sigpipe_default(lab):
    lab.call(signal.signal, signal.SIGPIPE, signal.SIG_DFL,
             label="signal(SIGPIPE, SIG_DFL)")
    read_end, write_end = os.pipe()
    lab.call(os.close, read_end, label="close(read end)")
    lab.call(os.write, write_end, b"a", label="write(write end, b'a')")
    lab.note("this line is never reached: the write above does not return")


killed = socklab.run(pipe_sigpipe_default, allow_signals=True)

# %%
# Notice what is missing: ``signal()`` returned the previous disposition
# (``SIG_IGN``), ``close()`` returned, and then there is no row for
# ``write()`` at all. The call never returned, so there was no value and no
# errno to record; the note under the table says the process was killed by
# ``SIGPIPE`` during it.
socklab.show(killed.results())

# %%
# No packets
# ----------
# A pipe is not a network connection: no packet is sent on any interface, so
# these runs have no trace to show. The failure is decided inside the kernel,
# which holds both ends of the pipe. Contrast the TCP pages, where the writer's
# kernel learns about the other end only from packets.

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    calls={
        "signal.getsignal(SIGPIPE)": signal.SIG_IGN,
        "close(read end)": None,
        "write(write end, b'a')": "EPIPE",
    },
    flow=[],
)
killed.expect(
    calls={"signal(SIGPIPE, SIG_DFL)": signal.SIG_IGN, "close(read end)": None},
    flow=[],
    killed_by="SIGPIPE",
)
# ``expect`` checks the calls that returned; that write() never returned is
# checked with plain code.
if any(call.label.startswith("write") for call in killed.calls) or killed.notes:
    raise socklab.ClaimError(
        "the page says write() never returns with SIGPIPE at SIG_DFL; this run recorded "
        f"{[c.label for c in killed.calls]} and notes {killed.notes}")
# For the site's "what happens when" matrix: the reader's end is closed, then
# the writer writes (one row per run: ignored, then default SIGPIPE).
run.summarize(closer="close(read end)", sends=["write(write end, b'a')"])
killed.summarize(closer="close(read end)")
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``write(2)`` (``EPIPE``: "the writing process will also receive a SIGPIPE
#    signal"), ``pipe(7)`` ("If all file descriptors referring to the read end of
#    a pipe have been closed, then a write(2) will cause a SIGPIPE signal to be
#    generated for the calling process"), ``signal(7)`` (the default action of
#    ``SIGPIPE`` is to terminate the process), and Python's ``signal`` module
#    documentation ("SIGPIPE is ignored (so write errors on pipes and sockets can
#    be reported as ordinary Python exceptions)").
