"""
The seed's C program, as written
================================

The answer this site grew from shows a C program and what it printed. Here is
that program, assembled from the answer's fragments without changing a line,
compiled with this machine's C compiler while the site was built, and run three
times in the lab: as written (``close()``), with the answer's ``shutdown()``
change, and with its ``SO_LINGER {1, 0}`` change. Each run's printed output and
packet capture is shown beside the seed's own, and the build checks what must
match.

What had to change: one character. The ``sed`` expression as the answer
publishes it, ``s/ */|/g``, cannot have printed the answer's output: it puts a
bar between every two characters (shown below). The original surely had two
spaces, ``s/  */|/g``, which the web page collapsed into one; that is what runs
here. Otherwise the program needs ``netstat`` (Debian's ``net-tools``), and it
runs on a terminal, as the seed's author ran it: its ``puts()`` lines would
otherwise be buffered and print after the ``netstat`` output. Its final
``sleep(5)`` is kept, so each run takes five seconds. The client's port
differs: the kernel picks it, as it did for the seed.
"""

# %%
# The program
# -----------
# The answer's fragments in their order, in one ``main()``. Two ``#if`` blocks
# select the answer's two variants at compile time, and a third its port
# (the seed's 4321, unless the run shares the host's ports: then a free one,
# so that the program never meets another program's socket); every other
# line is the seed's. The scenario compiles it once per variant with ``cc`` and runs each
# binary on a pseudo-terminal inside the lab's namespace, where the only
# sockets and packets are the program's.
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import socklab

SEED_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#ifndef PORT
#define PORT 4321
#endif

int main(void) {
int a_sock = socket(PF_INET, SOCK_STREAM, 0);
const int one = 1;
setsockopt(a_sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
struct sockaddr_in a_sin = {0};
a_sin.sin_port = htons(PORT);
a_sin.sin_family = AF_INET;
a_sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
bind(a_sock, (struct sockaddr *)&a_sin, sizeof(a_sin));
listen(a_sock, 1);
int c_sock = socket(PF_INET, SOCK_STREAM, 0);
fcntl(c_sock, F_SETFL, fcntl(c_sock, F_GETFL, 0)|O_NONBLOCK);
connect(c_sock, (struct sockaddr *)&a_sin, sizeof(a_sin));
fcntl(c_sock, F_SETFL, fcntl(c_sock, F_GETFL, 0)&~O_NONBLOCK);
struct sockaddr_in s_sin = {0};
socklen_t s_sinlen = sizeof(s_sin);
int s_sock = accept(a_sock, (struct sockaddr *)&s_sin, &s_sinlen);
struct pollfd c_pfd = { c_sock, POLLOUT, 0 };
if (poll(&c_pfd, 1, -1) != 1) perror("poll");
int erropt = -1;
socklen_t errlen = sizeof(erropt);
getsockopt(c_sock, SOL_SOCKET, SO_ERROR, &erropt, &errlen);
if (erropt != 0) { errno = erropt; perror("connect"); }
puts("P|Recv-Q|Send-Q|Local Address|Foreign Address|State|");
char cmd[256];
snprintf(cmd, sizeof(cmd), "netstat -tn | grep ':%hu ' | sed 's/  */|/g'",
ntohs(s_sin.sin_port));
puts("before close on client"); system(cmd);
#if defined(SHUTDOWN)
//close(c_sock);
shutdown(c_sock, SHUT_WR);
#elif defined(LINGER)
struct linger lo = { 1, 0 };
setsockopt(c_sock, SOL_SOCKET, SO_LINGER, &lo, sizeof(lo));
close(c_sock);
#else
close(c_sock);
#endif
puts("after close on client"); system(cmd);
if (send(s_sock, "a", 1, MSG_NOSIGNAL) < 0) perror("send");
puts("after send on server"); system(cmd);
puts("end of test");
sleep(5);
}
"""

VARIANTS = {"close": [], "shutdown": ["-DSHUTDOWN"], "linger": ["-DLINGER"]}


MISSING = [what for what, tool in (("a C compiler (apt-get install gcc)", shutil.which("cc") or shutil.which("gcc")),
                                   ("netstat (apt-get install net-tools)", shutil.which("netstat"))) if tool is None]
if MISSING:  # the page still builds, and says loudly what it could not run
    print(f"WARNING: this machine lacks {' and '.join(MISSING)}, so the seed's program was not compiled or run "
          "here, and none of this page's claims was checked")
    print(f"socklab: every claim of the seed's C program page UNCHECKED: missing {', '.join(MISSING)}",
          file=sys.stderr)


def free_port() -> int:
    """A port no socket of this machine uses now (the kernel's choice for a bind to port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compile_variants(workdir: Path) -> dict[str, Path]:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None
    source = workdir / "seed.c"
    source.write_text(SEED_C)
    port = [] if socklab.probe().private else [f"-DPORT={free_port()}"]  # the host's 4321 may be another's
    if port:
        print(f"WARNING: no private network namespace here, so the seed's program listens on port "
              f"{port[0].split('=')[1]}, not 4321, and its netstat shows the whole machine's sockets")
    binaries = {}
    for name, flags in VARIANTS.items():
        binaries[name] = workdir / f"seed_{name}"
        subprocess.run([cc, "-w", "-o", str(binaries[name]), *flags, *port, str(source)], check=True)
    return binaries


def on_a_terminal(binary: Path) -> str:
    """Run `binary` with a pseudo-terminal as its stdout and stderr; return what it printed."""
    main, secondary = pty.openpty()
    program = subprocess.Popen([str(binary)], stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
    os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the program has exited and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    program.wait(timeout=30)
    os.close(main)
    return out.decode().replace("\r\n", "\n")


def netstat_rows(output: str) -> dict[str, list[tuple[str, int, int]]]:
    """(state, Recv-Q, Send-Q) of each netstat row the program printed, under each of its headings."""
    rows: dict[str, list[tuple[str, int, int]]] = {}
    heading = None
    for line in output.splitlines():
        if line in ("before close on client", "after close on client", "after send on server"):
            heading = line
            rows[heading] = []
        elif heading and line.startswith("tcp|"):
            fields = line.split("|")
            rows[heading].append((fields[5], int(fields[1]), int(fields[2])))
    return {heading: sorted(found) for heading, found in rows.items()}


def seed_program(lab, binary):
    output = on_a_terminal(binary)
    lab.record("output", output)
    lab.record("netstat", netstat_rows(output))
    lab.record("perror", re.findall(r"^\w+: .*$", output, re.MULTILINE))


workdir = Path(tempfile.mkdtemp(prefix="socklab-seed-"))
binaries = {} if MISSING else compile_variants(workdir)
runs = {name: socklab.run(lambda lab, b=binary: seed_program(lab, b), name=f"seed_{name}", timeout=30)
        for name, binary in binaries.items()}
shutil.rmtree(workdir)

# %%
# The published ``sed`` expression
# --------------------------------
# One line of this build's ``netstat -tn`` output through the expression as
# published, and through the one that runs here:
line = "tcp        0      0 127.0.0.1:50000         127.0.0.1:4321          ESTABLISHED"
for expression in ("s/ */|/g", "s/  */|/g"):
    edited = subprocess.run(["sed", expression], input=line, capture_output=True, text=True, check=True).stdout
    print(f"sed '{expression}': {edited.strip()}")

# %%
# As written: close()
# -------------------
# The seed printed (its client port was 35790):
#
# .. code-block:: text
#
#    P|Recv-Q|Send-Q|Local Address|Foreign Address|State|
#    before close on client
#    tcp|0|0|127.0.0.1:35790|127.0.0.1:4321|ESTABLISHED|
#    tcp|0|0|127.0.0.1:4321|127.0.0.1:35790|ESTABLISHED|
#    after close on client
#    tcp|0|0|127.0.0.1:35790|127.0.0.1:4321|FIN_WAIT2|
#    tcp|1|0|127.0.0.1:4321|127.0.0.1:35790|CLOSE_WAIT|
#    after send on server
#    end of test
#
# This build's run printed:
if runs:
    close = runs["close"]
    print(close.value("output"))

# %%
# The server's row after the close matches the seed's: ``CLOSE_WAIT`` with
# ``Recv-Q`` 1, the unread FIN; and nothing is left after the send: the
# client's RST freed both sockets. The seed's trace had seven packets, ending
# in the client's ``R``. This build's has seven too, or six: this kernel
# delays its ACK of the FIN by a few milliseconds, and when the program's
# byte leaves within that time, the ACK rides on it (``[P.]`` with ``ack 2``)
# instead of going alone (the next section counts how often the timing goes
# each way).
if runs:
    BEFORE = [("ESTABLISHED", 0, 0), ("ESTABLISHED", 0, 0)]


    def seed_flow(run, middle, end):
        """The flow with the server's ACK of the FIN alone, or riding on its byte: whichever this run had."""
        alone = ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]", *middle, *end]
        riding = ["client [S]", "server [S.]", "client [.]", "client [F.]", *middle, *end]
        if run.isolation.capture and run.flow() == riding:
            assert run.packets[4].ack == 2, "the page says the byte carries the ACK of the FIN"
            return riding
        return alone


    close.expect(values={"perror": []}, flow=seed_flow(close, ["server [P.]"], ["client [R]"]))
    after_close = close.value("netstat")["after close on client"]
    # netstat prints every socket of the machine on port 4321: only the run's own namespace has no others
    with close.claim("netstat: two ESTABLISHED rows, then the server's CLOSE_WAIT with Recv-Q 1, then none",
                     private=True):
        assert close.value("netstat")["before close on client"] == BEFORE, close.value("netstat")
        assert ("CLOSE_WAIT", 1, 0) in after_close and close.value("netstat")["after send on server"] == []
    socklab.show(close.trace())

# %%
# The client's row is where this kernel and the seed's may differ, by timing
# alone. The seed's netstat showed ``FIN_WAIT2``: the server's ACK of the FIN
# had arrived (its trace shows it 0.8 ms after the FIN). This kernel delays
# that ACK by a few milliseconds, and the program's ``system("netstat ...")``
# often reads the table before it: the client is then still in ``FIN_WAIT1``
# with ``Send-Q`` 1, its FIN not yet acknowledged. Rarely it catches a third
# moment: ``FIN_WAIT1`` with ``Send-Q`` 0. netstat reads ``/proc/net/tcp``
# without taking the socket's lock, and the kernel takes the ACK in
# (``tcp_ack()`` moves ``snd_una`` past the FIN) a moment before it changes
# the state to ``FIN_WAIT2`` (``tcp_rcv_state_process()``). To show the cases,
# the same binary ran 20 more times, each stopped once it had printed ``end of
# test`` (its final ``sleep(5)`` changes nothing before that line):
if runs:
    client_rows = {"FIN_WAIT1": ("FIN_WAIT1", 0, 1), "FIN_WAIT2": ("FIN_WAIT2", 0, 0),
                   "FIN_WAIT1, ACK taken in": ("FIN_WAIT1", 0, 0)}


    def until_end_of_test(lab, binary):
        main, secondary = pty.openpty()
        program = subprocess.Popen([str(binary)], stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
        os.close(secondary)
        out = b""
        while b"end of test" not in out:
            out += os.read(main, 4096)
        program.kill()
        program.wait(timeout=5)
        os.close(main)
        lab.record("after close", netstat_rows(out.decode().replace("\r\n", "\n"))["after close on client"])


    workdir.mkdir()
    again = compile_variants(workdir)["close"]
    seen = {name: 0 for name in client_rows}
    for _ in range(20):
        rows = socklab.run(lambda lab: until_end_of_test(lab, again), name="seed_close_again").value("after close")
        client = [r for r in rows if r[0] != "CLOSE_WAIT"]
        with close.claim("each of the 20 runs shows one client row: FIN_WAIT1 (Send-Q 1 or 0) or FIN_WAIT2",
                         private=True):
            assert len(client) == 1 and client[0] in client_rows.values(), f"an unexpected client row: {rows}"
            seen[next(name for name, row in client_rows.items() if row == client[0])] += 1
    shutil.rmtree(workdir)
    print(f"this build's run: {[r for r in after_close if r[0] != 'CLOSE_WAIT'][0][0]}; "
          f"20 more runs: FIN_WAIT1 {seen['FIN_WAIT1']} times, FIN_WAIT2 {seen['FIN_WAIT2']} times, "
          f"FIN_WAIT1 with Send-Q 0 {seen['FIN_WAIT1, ACK taken in']} times")

# %%
# With shutdown(SHUT_WR)
# ----------------------
# The seed printed: the same until the send (here too the client's row after
# the shutdown may be ``FIN_WAIT1`` or ``FIN_WAIT2``, by the same timing), then
# both sockets still there, the client's ``Recv-Q`` now 1 (the byte it never
# reads):
#
# .. code-block:: text
#
#    after close on client
#    tcp|1|0|127.0.0.1:4321|127.0.0.1:56355|CLOSE_WAIT|
#    tcp|0|0|127.0.0.1:56355|127.0.0.1:4321|FIN_WAIT2|
#    after send on server
#    tcp|1|0|127.0.0.1:4321|127.0.0.1:56355|CLOSE_WAIT|
#    tcp|1|0|127.0.0.1:56355|127.0.0.1:4321|FIN_WAIT2|
#    end of test
#
# and its trace ended with the client's ACK of the byte, then, five seconds
# later, the client's ``R`` with an ACK. This build's run:
if runs:
    shut = runs["shutdown"]
    print(shut.value("output"))
    shut_rows = shut.value("netstat")
    with shut.claim("netstat: two ESTABLISHED rows, then CLOSE_WAIT, then both with Recv-Q 1", private=True):
        assert shut_rows["before close on client"] == BEFORE, shut_rows
        assert ("CLOSE_WAIT", 1, 0) in shut_rows["after close on client"], shut_rows
        assert shut_rows["after send on server"] == [("CLOSE_WAIT", 1, 0), ("FIN_WAIT2", 1, 0)], shut_rows
    shut.expect(
        values={"perror": []},
        flow=seed_flow(shut, ["server [P.]"], ["client [.]", "server [F.]", "client [.]"]),
    )
    socklab.show(shut.trace())

# %%
# Up to the client's ACK of the byte, the same packets as the seed's. The end
# differs: no reset, but the *server's* FIN and the client's ACK of it. Both
# come when the program ends after its ``sleep(5)`` and the kernel closes its
# descriptors. The seed's kernel closed the client's socket first, with the
# byte ``a`` still unread in it, and that sends a reset; this kernel closes a
# dying process's sockets newest first, so the server's goes first, and the
# client's socket, once it has the FIN, has nothing left to reset. That also
# takes loopback timing: the server's FIN has already reached the client's
# socket when the client's close runs; if it had not, the unread byte would
# draw the same RST.
# :ref:`Program exit without close() <sphx_glr_auto_examples_02_close_03_exit_without_close.py>`
# shows both orders and why. The gap is the ``sleep(5)``, measured on the
# capture's clock:
if runs and runs["shutdown"].isolation.capture:
    ack, fin = shut.packets[-3], shut.packets[-2]
    gap = (fin.time_ns - ack.time_ns) / 1e9
    assert 4.9 <= gap <= 5.6, f"the page says the exit comes about 5 s after the last ACK; it came after {gap:.3f} s"
    print(f"the server's FIN came {gap:.3f} s after the client's last ACK (the seed's RST: 5.022 s)")

# %%
# With SO_LINGER {1, 0}
# ---------------------
# The seed printed:
#
# .. code-block:: text
#
#    after close on client
#    send: Connection reset by peer
#    after send on server
#    end of test
#
# and its trace was the handshake and one ``R`` with an ACK. This build's run:
if runs:
    linger = runs["linger"]
    print(linger.value("output"))
    linger.expect(
        values={"perror": ["send: Connection reset by peer"]},
        flow=["client [S]", "server [S.]", "client [.]", "client [R.]"],
    )
    with linger.claim("netstat: two ESTABLISHED rows before the close, none after it", private=True):
        assert linger.value("netstat") == {
            "before close on client": BEFORE, "after close on client": [], "after send on server": []}
    socklab.show(linger.trace())

# %%
# The kernel's reasons
# ---------------------
# Each reset of these runs with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; recorded as root only, elsewhere these
# claims are reported as unchecked). With ``close()``, when the server's ACK of
# the FIN went alone, the client's socket was already the timewait socket the
# kernel keeps in ``FIN-WAIT-2`` when the byte arrived: ``TCP_TIMEWAIT_SOCKET``,
# as on the central page. When the ACK rode on the byte, the client was still
# in ``FIN-WAIT-1``; that case is claimed to draw one reset from the client,
# its reason not checked. With ``shutdown()``, no reset at all; with
# ``SO_LINGER {1, 0}``, ``close()`` itself resets (``TCP_STATE``, as on
# :ref:`the SO_LINGER {1, 0} page <sphx_glr_auto_examples_03_reset_01_linger_zero.py>`).
if runs:
    ack_alone = seed_flow(close, ["server [P.]"], ["client [R]"])[4] == "server [.]"
    close.expect(resets=[("client", "TCP_TIMEWAIT_SOCKET" if ack_alone else "")])
    shut.expect(resets=[])
    linger.expect(resets=[("client", "TCP_STATE")])

# %%
# Where this run ran
# ------------------
if runs:
    socklab.show(close.about())

# %%
# .. admonition:: References
#
#    The seed's program and outputs: ``../shared/seed`` (the answer this site
#    explains). ``netstat(8)``, ``pty(7)``, ``socket(7)`` (``SO_LINGER``),
#    ``shutdown(2)``, ``send(2)``.
