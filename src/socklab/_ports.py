"""The ports a scenario's sockets get: the page's, reproducibly, and never another program's.

Theory of operation
-------------------
A scenario is plain socket code with the page's fixed port (``PORT = 4321``).
Inside the scenario's process, and only there, socklab wraps three methods of
``socket.socket`` (``bind``, ``connect``, ``connect_ex``); the calls themselves
and their results are the kernel's.

In a private namespace (the normal case) the port numbers are the page's:

* ``bind`` is untouched.
* ``connect`` of a TCP socket that has no port yet asks the kernel for one
  client port at a time, 50000 first, then 50001, and so on, with the
  per-socket ``IP_LOCAL_PORT_RANGE`` option (Linux 6.3): a range of a single
  port, which ``__inet_hash_connect`` takes or refuses (``EADDRNOTAVAIL``, when
  that port already has a connection to the same peer). The first client of a
  page gets 50000 in every run, the second 50001, and a scenario can make as
  many connections as on any host. A socket whose scenario set its own
  ``IP_LOCAL_PORT_RANGE`` connects untouched. (The earlier trick, narrowing the
  namespace's ``ip_local_port_range`` to two ports, made a third ``connect()``
  to one listener fail; it also needed a writable ``/proc/sys``.) Where the
  option is missing (an older kernel), the kernel picks the port, and the
  client's port then differs between runs.

In the host's namespace (namespaces refused), the page's port may belong to
another program, and two runs at once would collide on it. So every port the
scenario names in ``bind`` or ``connect`` (on a loopback address, for
``connect``) is replaced by one free at that moment, the same replacement for
the same page port throughout the run, and the run's notes say so; a listener
bound to port 0 keeps the kernel's choice. Those ports are the run's own: the
capture's kernel filter (``_capture``) and the tables keep what uses them.
Client ports are asked for from 50000 up there too: the kernel gives one only
where no socket is bound to it and the connection (to a port of the run's
own) is new, so no other program's port is touched; where the host's
``ip_local_port_range`` leaves 50000 out, the kernel picks.
"""

from __future__ import annotations

import _socket
import errno
import ipaddress
import os
import socket
import struct
import weakref
from collections.abc import Callable
from typing import Any

IP_LOCAL_PORT_RANGE = 51  # linux/in.h, Linux 6.3 and later
FIRST_CLIENT_PORT = 50000
CLIENT_PORT_TRIES = 1000  # then the kernel's own choice


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _inet(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


class Ports:
    """Installed once in the scenario's process: see the module's documentation."""

    def __init__(self, private: bool, on_port: Callable[[int, int], None] | None = None) -> None:
        self.private = private
        self.on_port = on_port  #: called with (page port, port used) for every port of the run's own
        self.mapped: dict[int, int] = {}  #: page port -> the port this run used instead (host only)
        self.own: set[int] = set()  #: ports bound by this run's sockets (host only)
        self.bound: set[int] = set()  #: ports the scenario bound by number (a server's), as used
        #: The scenario's TCP sockets that bound, connected or were accepted (for TCP_INFO at snapshots).
        self.sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    # -- what the lab translates ----------------------------------------------
    def translate(self, port: int | None) -> int | None:
        """The port this run uses for the page's `port`."""
        return self.mapped.get(port, port) if port else port

    def translate_address(self, address: str) -> str:
        """``"127.0.0.1:4321"`` as this run has it."""
        host, sep, port = address.rpartition(":")
        if sep and port.isdigit():
            return f"{host}:{self.translate(int(port))}"
        return address

    # -- the wrappers ------------------------------------------------------------
    def install(self) -> None:
        cls = socket.socket
        original_bind, original_connect, original_accept = cls.bind, cls.connect, cls.accept
        ports = self

        def bind(sock: socket.socket, address: Any) -> None:
            if _inet(sock):
                ports.sockets.add(sock)
            if ports.private or not _inet(sock):
                original_bind(sock, address)
                if _inet(sock) and isinstance(address, tuple) and len(address) > 1 and address[1]:
                    ports.bound.add(sock.getsockname()[1])
                return None
            address = ports._replace(sock, address, always=True)
            original_bind(sock, address)
            page = address[1]
            port = sock.getsockname()[1]
            if page:
                ports.bound.add(port)
            if port not in ports.own:
                ports.own.add(port)
                if page == 0 and ports.on_port:
                    ports.on_port(port, port)
            return None

        def connect(sock: socket.socket, address: Any) -> None:
            if not _inet(sock):
                return original_connect(sock, address)
            ports.sockets.add(sock)
            if not ports.private:
                address = ports._replace(sock, address, always=False)
            if sock.type == socket.SOCK_STREAM and sock.getsockname()[1] == 0:
                return ports._connect_from_a_fixed_port(sock, address, original_connect)
            return original_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            try:
                connect(sock, address)
            except OSError as e:
                return e.errno or 0
            return 0

        cls.bind = bind  # type: ignore[method-assign,assignment]
        cls.connect = connect  # type: ignore[method-assign,assignment]
        cls.connect_ex = connect_ex  # type: ignore[method-assign,assignment]

        def accept(sock: socket.socket) -> Any:
            conn, address = original_accept(sock)
            if _inet(conn):
                ports.sockets.add(conn)
            return conn, address

        cls.accept = accept  # type: ignore[method-assign,assignment]

    def _replace(self, sock: socket.socket, address: Any, always: bool) -> Any:
        """Host mode: the address with the page's port replaced by this run's."""
        if not isinstance(address, tuple) or len(address) < 2 or not address[1]:
            return address
        host, page = address[0], address[1]
        if page not in self.mapped:
            if not (always or _is_loopback(host)):
                return address
            self.mapped[page] = _free_port(sock.family, host)
            self.own.add(self.mapped[page])
            if self.on_port:
                self.on_port(page, self.mapped[page])
        return (host, self.mapped[page], *address[2:])

    @staticmethod
    def _connect_from_a_fixed_port(sock: socket.socket, address: Any,
                                   original_connect: Callable[[socket.socket, Any], None]) -> None:
        try:
            own_range = struct.unpack("I", sock.getsockopt(socket.SOL_IP, IP_LOCAL_PORT_RANGE, 4))[0]
        except OSError:  # no per-socket port range in this kernel
            own_range = 0
        if own_range:  # the scenario chose its own range: that is what the page shows
            return original_connect(sock, address)
        for port in range(FIRST_CLIENT_PORT, FIRST_CLIENT_PORT + CLIENT_PORT_TRIES):
            try:
                sock.setsockopt(socket.SOL_IP, IP_LOCAL_PORT_RANGE, struct.pack("I", port << 16 | port))
            except OSError:  # no per-socket port range in this kernel: its own choice
                break
            try:
                return original_connect(sock, address)
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL:
                    raise
            finally:
                sock.setsockopt(socket.SOL_IP, IP_LOCAL_PORT_RANGE, struct.pack("I", 0))
        return original_connect(sock, address)


def _free_port(family: int, host: object, tries: int = 32) -> int:
    """A TCP port nothing uses on `host` now: the kernel's pick for a bind to port 0, and
    one no socket of the host mentions either (a TIME_WAIT left by an earlier run on that
    port would otherwise show in this run's tables)."""
    from ._states import snapshot

    probes: list[socket.socket] = []
    try:
        for _ in range(tries):
            probe = socket.socket(family, socket.SOCK_STREAM)
            probes.append(probe)  # held while we look, so the next pick is another port
            _socket.socket.bind(probe, (host, 0))  # the kernel's own bind, not the wrapper
            port = probe.getsockname()[1]
            mine = {os.fstat(p.fileno()).st_ino for p in probes}  # recent kernels list bound sockets too
            if not any(port in (row.local_port, row.peer_port) for row in snapshot(unix=False)
                       if row.inode not in mine):
                return port
        return port
    finally:
        for probe in probes:
            probe.close()
