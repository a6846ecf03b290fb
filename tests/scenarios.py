"""Scenarios shared by the tests (the seed's central one, and small fault cases)."""

import socket

PORT = 4321


def connected_across(lab):
    """On two hosts: a listener on the server host, a client on the client host connected to it
    across the link, and the accepted socket (the listener is returned so that it stays open)."""
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    return listener, client, server


def close_then_send(lab):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.snapshot("before close on client")
    lab.call(client.close, label="close")
    lab.wait_packet(".", sport=PORT)
    lab.wait_state(client, "FIN_WAIT2")
    lab.snapshot("after close on client")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_packet("R")
    lab.wait_state(server, None)
    lab.snapshot("after send on server")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #2")


def close_then_send_by_states(lab):
    """The seed's scenario waiting for socket states only: it needs no capture (FIN_WAIT2 means
    the FIN's ACK arrived; the server's socket gone means the RST did)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.snapshot("before close on client")
    lab.call(client.close, label="close")
    lab.wait_state(client, "FIN_WAIT2")
    lab.snapshot("after close on client")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_state(server, None)
    lab.snapshot("after send on server")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #2")


def bare_close_then_send():
    """The same calls with no observation at all (the benchmark's baseline)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    client.close()
    server.send(b"a", socket.MSG_NOSIGNAL)
    try:
        server.recv(1)  # returns when the RST has arrived
    except ConnectionResetError:
        pass
    try:
        server.send(b"a", socket.MSG_NOSIGNAL)
    except BrokenPipeError:
        pass
    for s in (listener, server):
        s.close()


SEED_FLOW = ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]", "server [P.]", "client [R]"]


def empty(lab):
    pass


def across_a_round_trip(lab):
    """The seed's central scenario on two hosts: the server closes, the client sends until the RST lands."""
    listener, client, server = connected_across(lab)
    lab.snapshot("connected")
    lab.call(server.close, label="close")
    lab.wait_packet("F.")
    lab.wait_state(client, "CLOSE_WAIT")
    n = 0
    while True:  # send until a send fails: every send made before the RST lands succeeds
        n += 1
        if lab.call(client.send, b"a", socket.MSG_NOSIGNAL, label=f"send #{n}") is None:
            break
    lab.snapshot("after")
    lab.record("sends", n)


def close_then_send_two_hosts(lab):
    """The seed's scenario (close, send, RST, send) with the client and the server on two hosts."""
    listener, client, server = connected_across(lab)
    lab.call(server.close, label="close")
    lab.wait_packet("F.")
    lab.wait_state(client, "CLOSE_WAIT")
    # the client's kernel may delay its ACK of the FIN; sent first, the byte would carry it, and the server
    # would meet data in FIN-WAIT-1 (TCP_ABORT_ON_DATA) instead of FIN-WAIT-2 (a timewait socket): wait for it
    lab.link.wait_packet(".", sender="client", after=1, fate="delivered")
    lab.call(client.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_packet("R")
    lab.call(client.send, b"a", socket.MSG_NOSIGNAL, label="send #2")
