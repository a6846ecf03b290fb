"""Two hosts joined by a link: a client and a server, each its own network namespace.

Theory of operation
-------------------
``two_hosts()`` is called inside a scenario, in the child that ``run()``
already isolated. It makes three fresh network namespaces from that thread
(``_rtnl.new_namespace``: the thread never leaves its own), so nothing is
added to the scenario's namespace, let alone the machine's::

    client ns                    wire ns                     server ns
    eth0 192.0.2.1  ---veth---  w0  [relay]  w1  ---veth---  eth0 192.0.2.2
         2001:db8::1                                              2001:db8::2

Each host has ``lo`` up, its address on ``eth0`` (IPv4 /24 and IPv6 /64,
documentation ranges, RFC 5737 and RFC 3849), and a permanent neighbour entry
for the other host, so no ARP or neighbour discovery ever crosses the link:
the first frame of a run is its SYN. IPv6 link-local addresses and duplicate
address detection are switched off for the same reason (``addr_gen_mode=1``,
``accept_dad=0``, set as the namespace's defaults before its ``eth0`` exists).
The wire namespace has IPv6 disabled and no addresses: it forwards nothing,
and only the relay (``_wire.Link``) moves frames across.

A scenario makes a socket on a host inside ``with net.server:``: the block
moves the calling thread into that host's namespace (``setns(2)``) and back.
A socket stays in the namespace it was created in, so after the block it is
used like any other socket. ``lab.wait_state`` and ``lab.snapshot`` inside such
a block see that host's sockets (sock_diag answers for the namespace of the
thread that asks); ``sockets()`` gives both hosts' tables at once.

Besides TCP, a few ICMPv6 MLD reports cross the link in a host's first
second (each host announcing its solicited-node multicast group; neither
``addr_gen_mode`` nor clearing IFF_MULTICAST stops them). They are recorded
like every frame, link rules do not apply to them, and ``_trace`` ignores
them, as it ignores everything that is not TCP.

Each host takes sysctls (``net.ipv4.*``, ``net.core.*``: TCP's are per
namespace), written in that host's ``/proc/sys/net`` and read back; what was
set is returned as plain data (``settings()``) for the run's provenance. The
client and server get the lab's two ephemeral ports (50000, 50001) unless a
scenario sets ``ip_local_port_range`` itself.

A scenario, whole (a lost FIN and its retransmission, across a 50 ms round trip)::

    def lost_fin(lab):
        with two_hosts(delay=0.025, client={"tcp_fin_timeout": 5}) as net:
            with net.server:
                listener = socket.socket()
                listener.bind(("0.0.0.0", 4321))
                listener.listen()
            with net.client:
                client = socket.create_connection(("192.0.2.2", 4321))
            server, _ = listener.accept()
            net.link.drop(lambda p: "F" in p.flags, count=1)      # the first FIN dies
            lab.call(client.close, label="close")
            net.link.wait_packet("F.", sender="client", after=1, fate="delivered")
            with net.server:
                lab.wait_state(server, "CLOSE_WAIT")

``close()`` (or leaving the ``with``) stops and joins the relay, then closes
the namespace descriptors; a namespace is freed by the kernel when its last
socket is closed too. It runs even when the scenario raised.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from typing import Any

from . import _netns, _rtnl, _states, _trace
from ._wire import Link, LinkFrame, Predicate

#: Short sysctl names a scenario may use, and where they live; any dotted name works too.
SYSCTLS = {
    **{name: f"net.ipv4.{name}" for name in (
        "tcp_fin_timeout", "tcp_retries1", "tcp_retries2", "tcp_syn_retries", "tcp_synack_retries",
        "tcp_rfc1337", "tcp_tw_reuse", "tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes",
        "ip_local_port_range", "tcp_max_syn_backlog", "tcp_syncookies", "tcp_orphan_retries",
        "tcp_challenge_ack_limit", "tcp_sack", "tcp_timestamps", "tcp_abort_on_overflow")},
    "somaxconn": "net.core.somaxconn",
}

_thread_stack = threading.local()


class WireUnavailable(RuntimeError):
    """This machine refused what two hosts need (namespaces, veth, packet sockets)."""


class SysctlError(ValueError):
    """A host's sysctl does not exist or could not be set."""


def full_name(name: str) -> str:
    """A sysctl's dotted name: a short name is TCP's (``tcp_fin_timeout``: ``net.ipv4.tcp_fin_timeout``)."""
    return SYSCTLS.get(name, name if "." in name else f"net.ipv4.{name}")


def _set(host: Host, name: str, value: object) -> str:
    """Write sysctl `name` in the calling thread's namespace (the host's); its value read back."""
    full = full_name(name)
    try:
        return _rtnl.write_sysctl(full, value)
    except OSError as e:
        hint = (f"the short names are {', '.join(SYSCTLS)}; any other is spelled in full (net.ipv4.tcp_sack)"
                if isinstance(e, FileNotFoundError) else
                "not every sysctl belongs to a network namespace, and a user namespace may not write "
                "the ones that do not")
        raise SysctlError(f"{host.name}: sysctl {full} = {value!r} was refused: {e.strerror}; {hint}") from None


@dataclasses.dataclass(frozen=True)
class Host:
    """One host of the topology: its name, addresses and namespace."""

    name: str
    ipv4: str
    ipv6: str
    mac: str
    namespace: int  #: file descriptor of its network namespace (closed with the topology)

    def __enter__(self) -> Host:
        """Make sockets on this host: the calling thread enters its namespace until the block ends."""
        stack = _thread_stack.__dict__.setdefault("saved", [])
        here = _rtnl.current_namespace()
        try:
            _rtnl.setns(self.namespace)
        except BaseException:
            os.close(here)
            raise
        stack.append(here)
        return self

    def __exit__(self, *exc: object) -> None:
        here = _thread_stack.saved.pop()
        try:
            _rtnl.setns(here)
        finally:
            os.close(here)

    def address(self, family: str = "ipv4") -> str:
        return self.ipv6 if family in ("ipv6", "IP6", 6) else self.ipv4

    def sysctl(self, name: str, value: object | None = None) -> str:
        """Read (or write, then read back) sysctl `name` on this host."""
        full = full_name(name)
        with self:
            return _rtnl.read_sysctl(full) if value is None else _rtnl.write_sysctl(full, value)


class TwoHosts:
    """A client and a server host joined by a link the scenario controls. Use as a context manager."""

    def __init__(self, *, delay: float = 0.025, sysctls: Mapping[str, object] | None = None,
                 client: Mapping[str, object] | None = None, server: Mapping[str, object] | None = None,
                 start: bool = True) -> None:
        self._namespaces: list[int] = []
        self._settings: dict[str, dict[str, str]] = {}
        self.link: Link | None = None
        try:
            self._build(delay, dict(sysctls or {}), dict(client or {}), dict(server or {}), start)
        except BaseException as e:
            self.close()
            if isinstance(e, OSError):
                raise WireUnavailable(
                    f"two hosts could not be set up: {e}. They need network namespaces, veth pairs and "
                    f"packet sockets (root, or an unprivileged user namespace). Fix: {_netns.FIX_NAMESPACES}"
                ) from e
            raise

    def _build(self, delay: float, common: dict, client: dict, server: dict, start: bool) -> None:
        names = ("client", "server")
        wire = self._namespace()
        spaces = {name: self._namespace() for name in names}
        self.client = Host("client", "192.0.2.1", "2001:db8::1", "02:00:00:00:00:01", spaces["client"])
        self.server = Host("server", "192.0.2.2", "2001:db8::2", "02:00:00:00:00:02", spaces["server"])
        hosts = {"client": self.client, "server": self.server}
        for host in hosts.values():
            with host:
                _rtnl.write_sysctl("net.ipv6.conf.default.addr_gen_mode", 1)  # no link-local address
                _rtnl.write_sysctl("net.ipv6.conf.default.accept_dad", 0)
                _netns.set_link_up("lo")
        with _rtnl.inside(wire):
            _rtnl.write_sysctl("net.ipv6.conf.default.disable_ipv6", 1)
            self.link = Link(Link.open_wire(), {host.name: f"w{i}" for i, host in enumerate(hosts.values())}, delay)
            for i, host in enumerate(hosts.values()):
                _rtnl.add_veth(f"w{i}", f"02:00:00:00:0{i + 1}:00", "eth0", host.mac, host.namespace)
                _netns.set_link_up(f"w{i}")
        for host in hosts.values():
            other = self.server if host is self.client else self.client
            given = {**common, **(client if host is self.client else server)}
            with host:
                _rtnl.disable_tx_checksum("eth0")
                _netns.set_link_up("eth0")
                _rtnl.add_address("eth0", host.ipv4, 24)
                _rtnl.add_address("eth0", host.ipv6, 64)
                _rtnl.add_neighbour("eth0", other.ipv4, other.mac)
                _rtnl.add_neighbour("eth0", other.ipv6, other.mac)
                self._settings[host.name] = {full_name(k): _set(host, k, v) for k, v in given.items()}
        if start:
            self.link.start()

    def _namespace(self) -> int:
        fd = _rtnl.new_namespace()
        self._namespaces.append(fd)
        return fd

    # -- what a scenario uses --------------------------------------------------------
    def __enter__(self) -> TwoHosts:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        failed = self.link.error if self.link is not None else None
        self.close()
        if failed is not None and kind is None:  # never hide the scenario's own exception
            raise RuntimeError(f"the link's relay failed during the scenario: {failed!r}") from failed

    def close(self) -> None:
        """Stop the relay and let the namespaces go (idempotent)."""
        if self.link is not None:
            self.link.close()
        for fd in self._namespaces:
            os.close(fd)
        self._namespaces = []

    def hosts(self) -> dict[str, Host]:
        return {"client": self.client, "server": self.server}

    def inodes(self) -> dict[int, str]:
        """Each host's namespace inode (what the kernel's events are filtered on), to its name."""
        return {os.fstat(h.namespace).st_ino: h.name for h in self.hosts().values()}

    def keep(self) -> list[int]:
        """Duplicates of the hosts' namespace descriptors: while they are open, the namespaces
        (and so their inode numbers) live on, whatever the scenario closed."""
        return [os.dup(h.namespace) for h in self.hosts().values()]

    def settings(self) -> dict[str, Any]:
        """What this topology set, as plain data for the run's provenance."""
        assert self.link is not None
        return {
            "delay": self.link.delay_ns / 1e9,
            "realtime relay": self.link.realtime,
            "hosts": {h.name: {"ipv4": h.ipv4, "ipv6": h.ipv6, "sysctls": dict(self._settings[h.name])}
                      for h in self.hosts().values()},
        }

    def sockets(self) -> dict[str, list[_states.SocketRow]]:
        """Each host's socket table now (sock_diag asked from inside its namespace), for tables per host."""
        out = {}
        for host in self.hosts().values():
            with host:
                out[host.name] = _states.snapshot(unix=False)
        return out

    def frames(self) -> list[LinkFrame]:
        assert self.link is not None
        return self.link.frames()

    def packets(self) -> list[_trace.Packet]:
        """The link's TCP segments, numbers relative, at the time each entered the link."""
        return _trace.dissect([(f.sent_ns, f.data) for f in self.frames()])

    def send_to(self, host: Host | str, packet: Any) -> LinkFrame:
        """Put an IP packet (a scapy ``IP``/``IPv6`` packet, or its bytes) onto the link toward `host`,
        as if the other host had sent it: the scripted peer. Returns its frame in the link's capture."""
        assert self.link is not None
        target = self.hosts()[host] if isinstance(host, str) else host
        other = self.server if target is self.client else self.client
        raw = bytes(packet)
        ethertype = b"\x86\xdd" if raw[0] >> 4 == 6 else b"\x08\x00"
        frame = _rtnl.mac_bytes(target.mac) + _rtnl.mac_bytes(other.mac) + ethertype + raw
        return self.link.inject(target.name, frame)

    def forge(self, sender: Host | str, flags: str, *, sport: int, dport: int, seq: int, ack: int | None = None,
              payload: bytes = b"", ipv6: bool = False) -> LinkFrame:
        """The scripted peer: a TCP segment as if `sender` sent it, put on the link toward the other host.

        Numbers are absolute (take them from the link's capture: ``wait_packet(...).packet.seq``);
        `flags` in scapy's letters (``"R"``, ``"RA"``, ``"A"``); an ACK flag is added when `ack` is
        given. Built with scapy (checksums included), without options.
        """
        from scapy.layers.inet import IP, TCP
        from scapy.layers.inet6 import IPv6

        source = self.hosts()[sender] if isinstance(sender, str) else sender
        target = self.server if source is self.client else self.client
        ip = (IPv6(src=source.ipv6, dst=target.ipv6) if ipv6 else IP(src=source.ipv4, dst=target.ipv4))
        if ack is not None and "A" not in flags:
            flags += "A"
        segment = TCP(sport=sport, dport=dport, flags=flags, seq=seq % 2**32, ack=(ack or 0) % 2**32)
        return self.send_to(target, ip / segment / payload if payload else ip / segment)


@dataclasses.dataclass(frozen=True)
class Wire:
    """Two hosts joined by a link, for ``run(scenario, wire=Wire(delay=0.025))``.

    The lab builds it before the scenario starts (so the kernel's events of both
    hosts are recorded from their first packet) and hands it to the scenario as
    ``lab.client``, ``lab.server`` and ``lab.link``. `delay` is one way, in seconds;
    `sysctls` apply to both hosts, `client` and `server` to one (short names in
    ``SYSCTLS``, or dotted names).
    """

    delay: float = 0.025
    sysctls: Mapping[str, object] = dataclasses.field(default_factory=dict)
    client: Mapping[str, object] = dataclasses.field(default_factory=dict)
    server: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.delay, int | float) or not 0 <= self.delay <= 10:
            raise ValueError(f"Wire(delay={self.delay!r}): a one-way delay in seconds, from 0 to 10")
        for which in ("sysctls", "client", "server"):
            given = getattr(self, which)
            if not isinstance(given, Mapping) or not all(isinstance(k, str) for k in given):
                raise TypeError(f"Wire({which}=...): a mapping of sysctl names to values, not {given!r}")

    def build(self, start: bool = True) -> TwoHosts:
        return TwoHosts(delay=self.delay, sysctls=self.sysctls, client=self.client, server=self.server,
                        start=start)


def sent_by(host: Host) -> Predicate:
    """A predicate for link rules: the segments `host` sent (``net.link.drop(sent_by(net.server))``)."""
    addresses = {host.ipv4, host.ipv6}
    return lambda p: p.source.address in addresses


def two_hosts(**options: Any) -> TwoHosts:
    """``with socklab.two_hosts(delay=0.025) as net:``: the topology, closed when the block ends.

    Options: `delay` (one way, seconds), `sysctls` (both hosts), `client` and `server`
    (sysctls of one host). Raises ``WireUnavailable`` when the machine refuses it."""
    return TwoHosts(**options)
