import subprocess

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from conftest import require_tool
from socklab import _trace

T0 = 1_700_000_000_000_000_000


def frame(sport, dport, flags, seq, ack=0, payload=b"", options=()):
    pkt = Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=512, options=list(options)) / payload
    return bytes(pkt)


SEED = [
    (T0, frame(50000, 4321, "S", 1000, options=[("MSS", 65495), ("SAckOK", b""), ("Timestamp", (5, 0)),
                                                   ("NOP", None), ("WScale", 7)])),
    (T0 + 13_000, frame(4321, 50000, "SA", 9000, 1001)),
    (T0 + 24_000, frame(50000, 4321, "A", 1001, 9001)),
    (T0 + 1_000_000, frame(50000, 4321, "FA", 1001, 9001)),
    (T0 + 2_000_000, frame(4321, 50000, "A", 9001, 1002)),
    (T0 + 3_000_000, frame(4321, 50000, "PA", 9001, 1002, b"a")),
    (T0 + 3_010_000, frame(50000, 4321, "R", 1002)),
]


def test_flags_print_in_tcpdump_order():
    assert [_trace.flag_text(b) for b in (0x02, 0x12, 0x10, 0x11, 0x18, 0x04, 0x14, 0)] == [
        "S", "S.", ".", "F.", "P.", "R", "R.", "none"]


def test_sequence_numbers_are_relative_per_direction():
    packets = _trace.dissect(SEED)
    assert [(p.flags, p.seq, p.ack) for p in packets] == [
        ("S", 0, None), ("S.", 0, 1), (".", 1, 1), ("F.", 1, 1), (".", 1, 2), ("P.", 1, 2), ("R", 2, None)]


def test_lines_read_like_tcpdump():
    packets = _trace.dissect(SEED)
    lines = [p.line(SEED[0][0]) for p in packets]
    assert lines[0] == (" 0.000000 IP 127.0.0.1.50000 > 127.0.0.1.4321: Flags [S], seq 0, win 512, "
                        "options [mss 65495,sackOK,TS,nop,wscale 7], length 0")
    assert lines[2] == " 0.000024 IP 127.0.0.1.50000 > 127.0.0.1.4321: Flags [.], ack 1, win 512, length 0"
    assert lines[5].endswith("Flags [P.], seq 1:2, ack 2, win 512, length 1")
    assert lines[6].endswith("Flags [R], seq 2, win 512, length 0")


def test_a_syns_mss_and_window_scale_are_fields_a_claim_can_name():
    syn, syn_ack = _trace.dissect(SEED)[:2]
    assert (syn.mss, syn.wscale) == (65495, 7)
    assert (syn_ack.mss, syn_ack.wscale) == (None, None)  # it carries no options


def test_non_tcp_frames_are_skipped():
    from scapy.layers.inet import UDP
    udp = bytes(Ether() / IP() / UDP(sport=1, dport=2) / b"x")
    assert _trace.dissect([(T0, udp)]) == []


def test_pcap_holds_every_frame_with_its_time(tmp_path):
    path = tmp_path / "seed.pcap"
    path.write_bytes(_trace.pcap_bytes(SEED))
    packets = rdpcap(str(path))
    assert [bytes(p) for p in packets] == [data for _, data in SEED]
    assert float(packets[-1].time) == pytest.approx((T0 + 3_010_000) / 1e9)


@pytest.mark.parametrize("tool", ["tcpdump", "tshark"])
def test_pcap_is_readable_by_capture_tools(tmp_path, tool):
    require_tool(tool, f"apt-get install {tool}")
    path = tmp_path / "seed.pcap"
    path.write_bytes(_trace.pcap_bytes(SEED))
    out = subprocess.run([tool, "-n", "-r", str(path)], capture_output=True, text=True, check=True).stdout
    assert len(out.strip().splitlines()) == len(SEED)
    assert "4321" in out


def test_ipv6_segments_are_dissected_like_ipv4_ones():
    from scapy.layers.inet6 import IPv6
    data = bytes(Ether() / IPv6(src="::1", dst="::1") / TCP(sport=50000, dport=4321, flags="S", seq=7,
                                                             options=[("MSS", 65476), ("SAckOK", b"")]))
    packet = _trace.parse(data, T0)
    assert (packet.ip, str(packet.source), packet.dport, packet.flags, packet.options) == (
        "IP6", "[::1]:50000", 4321, "S", "mss 65476,sackOK,eol")  # scapy pads the options with an EOL
    assert packet.line(T0) == " 0.000000 IP6 ::1.50000 > ::1.4321: Flags [S], seq 7, win 8192, " \
        "options [mss 65476,sackOK,eol], length 0"


def test_malformed_headers_are_not_packets_and_bad_options_are_marked():
    good = bytearray(SEED[0][1])
    short_ip = bytearray(good)
    short_ip[14] = 0x44  # IHL 4: shorter than an IPv4 header
    assert _trace.parse(bytes(short_ip)) is None
    short_tcp = bytearray(good)
    short_tcp[14 + 20 + 12] = 0x40  # data offset 4: shorter than a TCP header
    assert _trace.parse(bytes(short_tcp)) is None
    assert _trace.option_text(bytes([2, 4, 0xFF, 0xD7, 8, 40, 0])) == "mss 65495,[bad opt]"  # runs past the end
