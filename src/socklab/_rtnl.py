"""Network namespaces for threads, and the few rtnetlink requests a topology needs.

Theory of operation
-------------------
A network namespace belongs to a *thread* (``task->nsproxy``), not to a
process. So one thread can make a namespace without leaving its own:
``unshare(CLONE_NEWNET)`` moves the calling thread into a fresh namespace, we
open ``/proc/thread-self/ns/net`` (a file descriptor that keeps the namespace
alive after every thread has left it), and ``setns(2)`` takes the thread back
(:func:`new_namespace`). :func:`inside` switches the calling thread into a
namespace for the length of a ``with`` block. Sockets keep the namespace they
were created in, whatever the thread does next: that is how a scenario makes
a server socket on the server host and a client socket on the client host
from one thread. ``setns`` needs CAP_SYS_ADMIN over the namespace's owning user
namespace, which root has, and so does the unprivileged lab (it is root in the
user namespace it made). ``os.setns`` only exists from Python 3.12, so libc's
is called through ctypes.

Links, addresses and neighbours are made with rtnetlink (``rtnetlink(7)``),
spoken here with the standard library: four request types, each one struct
and a few attributes, about a hundred lines. pyroute2 would do the same, but
it is a large dependency to import in every scenario's child for four
messages, and an unprivileged user's Python would have to be given it too.
A request goes to the namespace of the netlink socket it is sent on, and the
socket's namespace is the creating thread's; so every function here acts on
the calling thread's current namespace.

* ``veth`` pair (``RTM_NEWLINK``, ``IFLA_LINKINFO`` kind ``veth``): one end
  here, the peer created directly in another namespace (``IFLA_NET_NS_FD``
  in ``VETH_INFO_PEER``), both with fixed MAC addresses (brought up afterwards,
  each in its own namespace, with ``_netns.set_link_up``).
* address (``RTM_NEWADDR``): ``IFA_F_NODAD`` so an IPv6 address is usable at
  once, with no duplicate address detection to wait for (or to see on the wire).
* permanent neighbour (``RTM_NEWNEIGH``, ``NUD_PERMANENT``): no ARP and no
  neighbour discovery on the link, so the first packet of a run is its SYN.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import itertools
import os
import socket
import struct
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000

RTM_NEWLINK, RTM_NEWADDR, RTM_NEWNEIGH = 16, 20, 28
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD = 0x02
NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT = 0x80

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBi")
_NDMSG = struct.Struct("=BxxxiHBB")
_libc = ctypes.CDLL(None, use_errno=True)
_sequence = itertools.count(1)


# -- namespaces ------------------------------------------------------------------

def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def current_namespace() -> int:
    """A new file descriptor for the calling thread's network namespace."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace `fd` refers to."""
    _check(_libc.setns(fd, CLONE_NEWNET), "setns(CLONE_NEWNET)")


def new_namespace() -> int:
    """A fresh network namespace, as a file descriptor; the calling thread stays where it was."""
    here = current_namespace()
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            return current_namespace()
        finally:
            setns(here)
    finally:
        os.close(here)


@contextlib.contextmanager
def inside(fd: int) -> Iterator[None]:
    """Run the ``with`` block with the calling thread in namespace `fd`, then go back."""
    here = current_namespace()
    try:
        setns(fd)
        try:
            yield
        finally:
            setns(here)
    finally:
        os.close(here)


# -- rtnetlink -------------------------------------------------------------------

def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + bytes((4 - size % 4) % 4)


def _request(kind: int, body: bytes) -> None:
    """Send one rtnetlink request in the calling thread's namespace; raise its error."""
    seq = next(_sequence)
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL)
    message = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as nl:
        nl.sendto(message, (0, 0))
        while True:
            reply = nl.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(reply):
                length, msg_type, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(reply, offset)
                if msg_type == NLMSG_ERROR and msg_seq == seq:
                    (code,) = struct.unpack_from("=i", reply, offset + _NLMSGHDR.size)
                    if code:
                        raise OSError(-code, f"rtnetlink request {kind}: {os.strerror(-code)}")
                    return
                offset += (length + 3) & ~3


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def add_veth(name: str, mac: str, peer: str, peer_mac: str, peer_namespace: int) -> None:
    """A veth pair, down: `name` here, `peer` created in the namespace `peer_namespace`.

    Asking for IFF_UP in the same request fails with ENOTCONN (``veth_open`` runs before
    the peer is registered): bring each end up afterwards, in its own namespace."""
    peer_info = (_IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                 + _attr(IFLA_IFNAME, peer.encode() + b"\0") + _attr(IFLA_ADDRESS, mac_bytes(peer_mac))
                 + _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_namespace)))
    linkinfo = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
    body = (_IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
            + _attr(IFLA_ADDRESS, mac_bytes(mac)) + _attr(IFLA_LINKINFO, linkinfo))
    _request(RTM_NEWLINK, body)


def _family_and_bytes(address: str) -> tuple[int, bytes]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return family, socket.inet_pton(family, address)


def add_address(ifname: str, address: str, prefix: int) -> None:
    """``ip address add ADDRESS/PREFIX dev IFNAME nodad`` (the prefix route comes with it)."""
    family, raw = _family_and_bytes(address)
    body = (_IFADDRMSG.pack(family, prefix, IFA_F_NODAD, 0, socket.if_nametoindex(ifname))
            + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw) + _attr(IFA_FLAGS, struct.pack("=I", IFA_F_NODAD)))
    _request(RTM_NEWADDR, body)


def add_neighbour(ifname: str, address: str, mac: str) -> None:
    """``ip neigh add ADDRESS lladdr MAC dev IFNAME nud permanent``."""
    family, raw = _family_and_bytes(address)
    body = (_NDMSG.pack(family, socket.if_nametoindex(ifname), NUD_PERMANENT, 0, 0)
            + _attr(NDA_DST, raw) + _attr(NDA_LLADDR, mac_bytes(mac)))
    _request(RTM_NEWNEIGH, body)


SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM = 0x16, 0x17


def disable_tx_checksum(ifname: str) -> None:
    """``ethtool -K IFNAME tx off``: the stack computes every checksum before the frame leaves.

    A veth offers checksum offload, so a segment it transmits carries only a partial
    checksum (CHECKSUM_PARTIAL), which the receiving veth accepts on trust. A relay that
    reads the frame from a packet socket and writes it out again hands the receiver the
    raw bytes, partial checksum and all: counted in TcpInCsumErrors and dropped. Turning
    transmit checksumming off also turns off scatter-gather and TSO, which depend on it, so
    every frame is at most one MTU and can be written out again whole.
    """
    value = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_STXCSUM, 0), 8)
    ifreq = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        fcntl.ioctl(s, SIOCETHTOOL, ifreq)


def write_sysctl(name: str, value: object) -> str:
    """Write ``net.ipv4.tcp_fin_timeout``-style `name` in the calling thread's namespace; return
    what reads back. /proc/sys/net is the namespace of the thread that opens it."""
    path = "/proc/sys/" + name.replace(".", "/")
    text = " ".join(str(v) for v in value) if isinstance(value, tuple | list) else str(value)
    try:
        with open(path, "w") as f:
            f.write(text)
        with open(path) as f:
            return " ".join(f.read().split())
    except FileNotFoundError:
        raise OSError(errno.ENOENT, f"no sysctl {name} in this kernel ({path})") from None


def read_sysctl(name: str) -> str:
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return " ".join(f.read().split())
