"""
python script.py | head -1
==========================

``head -1`` exits after the first line; the Python program still writing
into the pipe then gets ``EPIPE``, which Python raises as ``BrokenPipeError``
(it ignores ``SIGPIPE`` at start-up, so the signal does not kill it). What
the reader sees depends on where the error lands: a traceback from
``print()`` and exit status 1, or, when the last output is still buffered at
exit, "Exception ignored ... BrokenPipeError" and exit status 120. The fix
in Python's documentation points standard output at ``/dev/null`` and exits
quietly.
"""

# %%
# The scenario
# ------------
# Real processes, as the shell runs them: the scenario starts the Python
# program with its standard output on a pipe, and ``head -1`` reading that
# pipe, then waits for both and records their exit statuses, what ``head``
# printed and what the program wrote to its standard error. Each program's
# first line is the disposition of ``SIGPIPE`` it started with, which is
# what ``head`` prints. (``subprocess`` resets ``SIGPIPE`` to its default
# before it starts a program, ``restore_signals=True``, so what the line
# shows is what the new interpreter set itself.) The programs run with an
# environment without ``PYTHON*`` variables: ``PYTHONUNBUFFERED`` would
# change where the error lands (the last run shows how).
import os
import subprocess
import sys
import tempfile

import socklab

PROGRAMS = {
    # Far more than a pipe holds (64 KiB): the error comes while it prints.
    "many lines": """\
import signal
print(signal.getsignal(signal.SIGPIPE).name)
for i in range(100_000):
    print(i)
""",
    # Two short lines; the second is still in Python's buffer when the program
    # ends. It waits until the reader is gone (poll() reports POLLERR on the
    # write end of a pipe whose reader closed it), so that the run does not
    # depend on which process is faster.
    "short, flushed at exit": """\
import select, signal, sys
print(signal.getsignal(signal.SIGPIPE).name, flush=True)
poller = select.poll()
poller.register(sys.stdout, 0)
poller.poll(5000)
print("the last line")
""",
    # The fix from Python's documentation ("Note on SIGPIPE").
    "documented fix": """\
import os, signal, sys
def main():
    try:
        print(signal.getsignal(signal.SIGPIPE).name)
        for i in range(100_000):
            print(i)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
main()
""",
    # What a C program does: SIGPIPE at its default action.
    "SIGPIPE at SIG_DFL": """\
import signal
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
print(signal.getsignal(signal.SIGPIPE).name)
for i in range(100_000):
    print(i)
""",
}


def python_to_head(lab, name, program, flags=()):
    """Run ``python [flags] script.py | head -1``; record both exit statuses and the writer's stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "script.py"), "w") as f:
            f.write(program)
        writer = subprocess.Popen([sys.executable, *flags, "script.py"], cwd=tmp, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = subprocess.Popen(["head", "-1"], stdin=writer.stdout, stdout=subprocess.PIPE)
        writer.stdout.close()  # only head holds the reading end now
        printed, _ = head.communicate(timeout=10)
        errors = writer.stderr.read().decode().replace(tmp + os.sep, "")  # print script.py's path as typed
        writer.wait(timeout=10)
    lab.record(f"{name}: head printed", printed.decode())
    lab.record(f"{name}: head's exit status", head.returncode)
    lab.record(f"{name}: python's exit status", writer.returncode)
    lab.record(f"{name}: python's stderr", errors)


def pipe_to_head(lab):
    for name, program in PROGRAMS.items():
        python_to_head(lab, name, program)
    python_to_head(lab, "short, python -u", PROGRAMS["short, flushed at exit"], flags=["-u"])


run = socklab.run(pipe_to_head)


def show_outcomes(r):
    for name in [*PROGRAMS, "short, python -u"]:
        status = r.value(f"{name}: python's exit status")
        said = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        print(f"== {name}: head printed {r.value(f'{name}: head printed')!r} (exit status "
              f"{r.value(f'{name}: head' + chr(39) + 's exit status')}); python: {said}; its stderr:")
        print("   " + (r.value(f"{name}: python's stderr").strip().replace("\n", "\n   ") or "(empty)"))


# %%
# What each run printed
# ---------------------
# In every run ``head`` printed ``SIG_IGN`` (or ``SIG_DFL`` where the program
# set it) and exited 0: the disposition Python gave ``SIGPIPE`` before the
# program's first line ran. Then, by program:
#
# * **many lines**: ``print()`` raised ``BrokenPipeError``, nothing caught
#   it, the traceback went to standard error and the exit status is 1;
# * **short, flushed at exit**: the first line was flushed at once, the
#   second stayed in Python's buffer, the program ended normally, and the
#   error came when the interpreter flushed standard output on its way out:
#   "Exception ignored in: <_io.TextIOWrapper name='<stdout>' ...>" (Python
#   3.13 says "Exception ignored on flushing sys.stdout:"; the page checks the
#   one of the Python that runs it) and exit status 120, which Python uses
#   when flushing at exit fails;
# * **documented fix**: no output on standard error, exit status 1;
# * **SIGPIPE at SIG_DFL**: killed by signal 13, ``SIGPIPE``, silently (a
#   shell shows that status as 141: 128 + 13), as a C program would be; but
#   see the documentation's warning below;
# * **short, python -u**: unbuffered, the second ``print()`` writes at once,
#   so the error is a traceback from that line and the status is 1.
#
# In a shell, ``$?`` after the pipeline is ``head``'s status, 0, in every
# case: only the noise on standard error shows, unless ``set -o pipefail``
# is on (then the pipeline's status is the program's).
show_outcomes(run)

# %%
# The same values as the run recorded them (``subprocess`` gives the status
# of a process killed by a signal as minus the signal's number: -13).
socklab.show(run.results())

# %%
# No packets
# ----------
# A pipe is not a network connection: the capture is empty. The kernel knows
# both ends of a pipe, so the first write after the reader is gone fails at
# once (see :ref:`the pipe page <sphx_glr_auto_examples_01_local_01_pipe_epipe.py>`).

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel or Python does anything
# else, the build fails here and says which claim broke.
run.expect(
    flow=[],
    values={
        **{f"{name}: head's exit status": 0 for name in [*PROGRAMS, "short, python -u"]},
        **{f"{name}: head printed": "SIG_IGN\n" for name in ["many lines", "short, flushed at exit",
                                                              "documented fix", "short, python -u"]},
        "SIGPIPE at SIG_DFL: head printed": "SIG_DFL\n",
        "many lines: python's exit status": 1,
        "short, flushed at exit: python's exit status": 120,
        "documented fix: python's exit status": 1,
        "documented fix: python's stderr": "",
        "SIGPIPE at SIG_DFL: python's exit status": -13,  # subprocess: killed by signal 13
        "SIGPIPE at SIG_DFL: python's stderr": "",
        "short, python -u: python's exit status": 1,
    },
)


def stderr_of(name):
    return run.value(f"{name}: python's stderr")


TRACEBACK_END = "BrokenPipeError: [Errno 32] Broken pipe"


def check_stderr(name, starts, line, at_exit):
    """The writer's stderr starts with `starts`, shows `line` (or not, for None), ends with the
    BrokenPipeError, and has the exit-time "Exception ignored" message only if `at_exit`."""
    text = stderr_of(name)
    ok = (text.startswith(starts) and text.strip().endswith(TRACEBACK_END)
          and (line is None or line in text) and ("Exception ignored" in text) == at_exit
          and ("Traceback" in text) != at_exit)
    assert ok, f"the page says of {name!r}: starts {starts!r}, shows {line!r}, at exit: {at_exit}; got {text!r}"


check_stderr("many lines", "Traceback", "print(i)", at_exit=False)
AT_EXIT = ("Exception ignored on flushing sys.stdout:" if sys.version_info >= (3, 13)
           else "Exception ignored in: <_io.TextIOWrapper name='<stdout>'")
check_stderr("short, flushed at exit", AT_EXIT, None, at_exit=True)
check_stderr("short, python -u", "Traceback", 'print("the last line")', at_exit=False)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    Python's ``signal`` module documentation, "Note on SIGPIPE": "Piping
#    output of your program to tools like head(1) will cause a SIGPIPE signal
#    to be sent to your process when the receiver of its standard output
#    closes early. This results in an exception like BrokenPipeError: [Errno
#    32] Broken pipe. To handle this case, wrap your entry point to catch this
#    exception", with the program used above, and: "Do not set SIGPIPE's
#    disposition to SIG_DFL in order to avoid BrokenPipeError. Doing that
#    would cause your program to exit unexpectedly whenever any socket
#    connection is interrupted while your program is still writing to it."
#    Python's ``sys.exit`` documentation ("If an error occurs in the cleanup
#    after the Python interpreter has caught SystemExit (such as an error
#    flushing buffered data in the standard streams), the exit status is
#    changed to 120"); ``subprocess.Popen`` (``restore_signals``); ``python
#    -u`` and ``PYTHONUNBUFFERED``; ``pipe(7)``;
#    ``write(2)`` (``EPIPE``); ``signal(7)``; ``bash(1)`` (``pipefail``, "The
#    return status of a pipeline is the exit status of the last command").
