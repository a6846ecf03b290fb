"""Records written by hand for tests that need no kernel: rows, calls, the seed's run."""

from __future__ import annotations

from socklab import Endpoint, State
from socklab._records import Call, Finished, Frames, Snapshot, SocketRef, Started
from socklab._run import Run
from socklab._states import SocketRow


def end(text: str | None) -> Endpoint | None:
    return Endpoint.parse(text) if text else None


def row(state, local, peer, recv_q=0, send_q=0, timer="", inode=0) -> SocketRow:
    return SocketRow("tcp", State.parse(state), recv_q, send_q, Endpoint.parse(local), Endpoint.parse(peer),
                     timer, inode)


def call(label, time_ns, value=None, errno=None, local=None, peer=None, listening=False, inode=0, start=None,
         by=None) -> Call:
    """A recorded call; `value` is what it returned (when `errno` is None)."""
    returned = None if errno else repr(value)
    return Call(label, time_ns - 1 if start is None else start, time_ns, value, returned, errno,
                SocketRef(end(local), end(peer), listening, inode), by)


LISTENER = row("LISTEN", "127.0.0.1:4321", "0.0.0.0:*", send_q=1, inode=1)
CLIENT, SERVER = ("127.0.0.1:50000", "127.0.0.1:4321"), ("127.0.0.1:4321", "127.0.0.1:50000")


def seed_run(frames, second_send="EPIPE", server_state="CLOSE_WAIT") -> Run:
    """The seed's run: close() on the client, two sends on the server (times 1..7)."""
    second = (call("send #2", 6, errno="EPIPE", local=SERVER[0]) if second_send == "EPIPE"
              else call("send #2", 6, second_send, local=SERVER[0]))
    return Run("seed", [
        Started("6.18.0", "netns", True, "", "", 0),
        Snapshot("before", 1, (LISTENER, row("ESTABLISHED", *CLIENT), row("ESTABLISHED", *SERVER))),
        call("close", 2, None, local=CLIENT[0], peer=CLIENT[1]),
        Snapshot("after close", 3, (LISTENER, row("FIN_WAIT2", *CLIENT), row(server_state, *SERVER, recv_q=1))),
        call("send #1", 4, 1, local=SERVER[0], peer=SERVER[1]),
        Snapshot("after send", 5, (LISTENER,)),
        second,
        Frames(tuple(frames)),
        Finished(7),
    ])
