"""The capture: each packet once, flushed by a marker, inside a private namespace."""

import os
import socket
import subprocess
import textwrap
import time

import pytest

import scenarios
import socklab
from conftest import require_tool
from socklab import _capture


def exchange(lab):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 4321))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", 4321))
    server, _ = listener.accept()
    for i in range(20):
        client.send(b"x" * (i + 1))
        server.recv(100)
    # no wait: every segment was transmitted before the flush, which is what is tested


def test_each_packet_appears_once_and_none_is_lost():
    run = socklab.run(exchange)
    data = [p for p in run.packets if p.length]
    assert [p.length for p in data] == list(range(1, 21))
    assert len({(p.sport, p.seq, p.flags, p.ack) for p in run.packets}) == len(run.packets)


def test_flush_marker_is_not_in_the_trace():
    run = socklab.run(exchange)
    assert all(p.sport != 9 and p.dport != 9 for p in run.packets)
    assert len(run.frames) == len(run.packets)  # no UDP marker frame left


@pytest.mark.parametrize("tool", ["tcpdump", "tshark"])
def test_a_runs_pcap_reads_back_in_capture_tools_packet_for_packet(tool, tmp_path):
    require_tool(tool, f"apt-get install {tool}")
    run = socklab.run(scenarios.close_then_send)
    path = run.save_pcap(tmp_path / "run.pcap")
    out = subprocess.run([tool, "-n", "-r", path], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == len(run.packets) == 7
    assert "4321" in lines[0] and ("[R]" in lines[-1] or "RST" in lines[-1])


OVERFLOW = textwrap.dedent("""
    import socket, sys, threading
    sys.path.insert(0, sys.argv[1])
    import socklab

    def transfer(lab):  # 256 MiB with no lab step in between: more than any capture queue holds
        listener = socket.socket()
        listener.bind(("127.0.0.1", 4321))
        listener.listen(1)
        client = socket.create_connection(("127.0.0.1", 4321))
        server, _ = listener.accept()
        size = 256 << 20
        sender = threading.Thread(target=client.sendall, args=(bytes(size),))
        sender.start()
        while size:
            size -= len(server.recv(1 << 20))
        sender.join()

    try:
        socklab.run(transfer, timeout=60)
    except socklab.ScenarioError as e:
        print(str(e).partition("Traceback")[0])
""")


def test_an_overflowing_capture_says_so_and_what_to_do(unprivileged):
    result = unprivileged.run(["-c", OVERFLOW, str(unprivileged.home / "src")])
    assert "the capture overflowed: the kernel dropped" in result.stdout, result.stdout + result.stderr
    assert "KiB) was full" in result.stdout and "Fix: " in result.stdout


def _packet_socket_inodes() -> set[int]:
    with open("/proc/net/packet") as f:
        return {int(line.split()[8]) for line in list(f)[1:]}


def test_a_closed_capture_leaves_no_descriptor_and_the_kernel_releases_its_socket():
    try:
        capture = _capture.Capture("lo")
    except PermissionError:
        pytest.skip("a packet socket needs CAP_NET_RAW")
    descriptors = set(os.listdir("/proc/self/fd"))
    inode = os.fstat(capture.sock.fileno()).st_ino
    assert inode in _packet_socket_inodes()
    capture.close()
    assert capture.sock.fileno() == -1
    assert set(os.listdir("/proc/self/fd")) < descriptors  # the packet socket's and the marker's are gone
    deadline = time.monotonic() + 5  # released by the kernel's worker, moments later
    while inode in _packet_socket_inodes():
        assert time.monotonic() < deadline, "the kernel did not release the closed packet socket within 5 s"
        time.sleep(0.005)
