"""The Linux side of "Linux, and other systems": what bind() allows with SO_REUSEADDR, and the option names.

Run for other-systems.md while the docs build. It draws nothing: every run only
checks a claim the page makes about Linux that no other page shows. Run it by
hand with ``python other_systems_checks.py``.
"""

import socket

import socklab

PORT = 4321
ADDR = ("127.0.0.1", PORT)
SERVER_SIDE = (f"127.0.0.1:{PORT}", "127.0.0.1:50000")  # the client gets port 50000 in every run


def reuseaddr(on: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(on))
    return sock


def bind_beside_time_wait(lab):
    """The server closes first, so its side of the connection waits in TIME_WAIT on port 4321."""
    listener = socket.create_server(ADDR)
    client = socket.create_connection(ADDR)
    server, _ = listener.accept()
    listener.close()
    lab.call(server.close, label="close()")
    lab.wait_state(client, "CLOSE_WAIT")  # the server's FIN has arrived
    lab.call(client.close, label="close()")
    lab.wait_state(SERVER_SIDE, "TIME_WAIT")
    lab.snapshot("TIME_WAIT on the port")
    lab.call(reuseaddr(False).bind, ADDR, label="bind, SO_REUSEADDR off", by="new socket")
    lab.call(reuseaddr(True).bind, ADDR, label="bind, SO_REUSEADDR on", by="new socket")


def bind_beside_listener(lab):
    """A listening socket holds the port; both sockets set SO_REUSEADDR."""
    first = reuseaddr(True)
    first.bind(ADDR)
    first.listen()
    lab.call(reuseaddr(True).bind, ADDR, label="second bind, both SO_REUSEADDR", by="new socket")


socklab.run(bind_beside_time_wait, name="bind beside TIME_WAIT").expect(
    calls={"bind, SO_REUSEADDR off": "EADDRINUSE", "bind, SO_REUSEADDR on": None},
    states={"TIME_WAIT on the port": {"server": "TIME_WAIT"}},
)
socklab.run(bind_beside_listener, name="bind beside a listener").expect(
    calls={"second bind, both SO_REUSEADDR": "EADDRINUSE"})

# Linux's names for the keepalive and user-timeout options: this kernel takes each one and
# gives the value back (seconds for the keepalive ones, milliseconds for TCP_USER_TIMEOUT).
OPTIONS = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3, "TCP_USER_TIMEOUT": 10_000}


def option_names(lab):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    for name, value in OPTIONS.items():
        opt = getattr(socket, name)
        lab.call(sock.setsockopt, socket.IPPROTO_TCP, opt, value, label=f"set {name}", by="socket")
        lab.call(sock.getsockopt, socket.IPPROTO_TCP, opt, label=f"get {name}", by="socket")


socklab.run(option_names, name="option names").expect(
    calls={f"get {name}": value for name, value in OPTIONS.items()}
    | {f"set {name}": None for name in OPTIONS})
