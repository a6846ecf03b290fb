"""Ladder diagrams: the picture says what the run recorded, packet by packet."""

import io
import socket
import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

import scenarios
import socklab
from builders import call, row
from socklab import _ladder
from socklab._records import Finished, Frames, Snapshot, Started
from socklab._run import Run

T0 = 1_700_000_000_000_000_000
US = 1_000
CLIENT, SERVER = "127.0.0.1:50000", "127.0.0.1:4321"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    _ladder.pyplot().close("all")


def frame(sport, dport, flags, seq, ack=0, payload=b"", src="127.0.0.1"):
    return bytes(Ether() / IP(src=src, dst="127.0.0.1") / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=512) / payload)


LISTENER = row("LISTEN", SERVER, "0.0.0.0:*", send_q=1, inode=1)
# The seed's run: handshake, client close(), server ACK, server sends a byte, client RST.
PACKETS = [
    (T0, frame(50000, 4321, "S", 1000)),
    (T0 + 13 * US, frame(4321, 50000, "SA", 9000, 1001)),
    (T0 + 24 * US, frame(50000, 4321, "A", 1001, 9001)),
    (T0 + 1000 * US, frame(50000, 4321, "FA", 1001, 9001)),
    (T0 + 2000 * US, frame(4321, 50000, "A", 9001, 1002)),
    (T0 + 3000 * US, frame(4321, 50000, "PA", 9001, 1002, b"a")),
    (T0 + 3010 * US, frame(50000, 4321, "R", 1002)),
]


def seed_run(frames=PACKETS, capture=True):
    return Run("seed", [
        Started("6.18.0", "netns" if capture else "none", capture,
                "" if capture else "namespaces are refused here", "", T0 - 500 * US),
        Snapshot("before close", T0 + 50 * US,
                 (LISTENER, row("ESTABLISHED", SERVER, CLIENT), row("ESTABLISHED", CLIENT, SERVER))),
        call("close()", T0 + 1010 * US, None, local=CLIENT, peer=SERVER),
        Snapshot("after close", T0 + 2100 * US,
                 (LISTENER, row("CLOSE_WAIT", SERVER, CLIENT, 1), row("FIN_WAIT2", CLIENT, SERVER))),
        call("send #1", T0 + 3050 * US, 1, local=SERVER, peer=CLIENT),
        Snapshot("after send", T0 + 3200 * US, (LISTENER,)),
        call("send #2", T0 + 3300 * US, errno="EPIPE", local=SERVER),
        Frames(tuple(frames)),
        Finished(T0 + 4000 * US),
    ])


def drawn(fig, prefix):
    """{gid: artist} of the figure's artists whose gid starts with `prefix`."""
    return {a.get_gid(): a for a in fig.findobj(lambda a: (a.get_gid() or "").startswith(prefix))}


def arrows(fig):
    found = drawn(fig, "packet-")
    return [found[g] for g in sorted((g for g in found if g.count("-") == 1), key=lambda g: int(g[7:]))]


def texts(fig, prefix):
    """Texts whose gid is `prefix` and a number, in number order."""
    found = {g[len(prefix):]: a for g, a in drawn(fig, prefix).items()}
    return [found[n].get_text() for n in sorted((n for n in found if n.isdigit()), key=int)]


def test_one_arrow_per_packet_from_sender_to_receiver():
    run = seed_run()
    fig = _ladder.ladder(run)
    shapes = arrows(fig)
    assert len(shapes) == len(run.packets) == 7
    left, right = _ladder._X
    starts = [a.get_path().vertices[0][0] for a in shapes]
    assert starts == pytest.approx([left if p.sport == 50000 else right for p in run.packets])


def test_arrows_are_labelled_with_flags_in_words_and_numbers():
    fig = _ladder.ladder(seed_run())
    labels = drawn(fig, "packet-")
    assert [labels[f"packet-{i}-label"].get_text() for i in range(7)] == [
        "SYN", "SYN-ACK", "ACK", "FIN-ACK", "ACK", "PSH-ACK 1 byte", "RST"]
    assert [labels[f"packet-{i}-detail"].get_text() for i in range(7)] == [
        "seq 0", "seq 0 ack 1", "ack 1", "seq 1 ack 1", "ack 2", "seq 1:2 ack 2", "seq 2"]


def test_rows_follow_time_so_calls_sit_between_the_packets_around_them():
    fig = _ladder.ladder(seed_run())
    y = {g: a.get_position()[1] for g, a in drawn(fig, "").items() if hasattr(a, "get_position")}
    y |= {f"packet-{i}": a.get_path().vertices[0][1] for i, a in enumerate(arrows(fig))}
    assert y["packet-3"] < y["call-0"] < y["packet-4"]  # close() returned after its FIN left
    assert y["packet-6"] < y["call-1"] < y["state-right-2"] < y["call-2"]
    assert texts(fig, "time-")[:4] == ["+0.000 ms", "+0.013 ms", "+0.024 ms", "+0.050 ms"]


def test_states_are_written_beside_each_lifeline_where_they_change():
    fig = _ladder.ladder(seed_run())
    assert texts(fig, "state-left-") == ["ESTABLISHED", "FIN-WAIT-2", "CLOSED"]
    assert texts(fig, "state-right-") == ["ESTABLISHED", "CLOSE-WAIT", "CLOSED"]
    left, right = _ladder._X
    assert {a.get_position()[0] for g, a in drawn(fig, "state-left-").items()} == {left}
    assert {a.get_position()[0] for g, a in drawn(fig, "state-right-").items()} == {right}


def test_states_are_spelled_as_rfc_9293_does_like_in_the_state_diagram():
    records = seed_run().records
    records.insert(-2, Snapshot("unhashed", T0 + 3400 * US, (row("CLOSE", SERVER, CLIENT),)))
    assert texts(_ladder.ladder(Run("seed", records)), "state-right-") == [
        "ESTABLISHED", "CLOSE-WAIT", "CLOSED"]


def test_calls_are_written_on_the_side_that_made_them_with_their_result():
    fig = _ladder.ladder(seed_run())
    calls = drawn(fig, "call-")
    assert [calls[f"call-{i}"].get_text() for i in range(3)] == ["close()", "send #1 = 1", "send #2 = EPIPE"]
    left, right = _ladder._X
    assert calls["call-0-marker"].get_xdata()[0] == left
    assert calls["call-2-marker"].get_xdata()[0] == right
    assert calls["call-2"].get_color() == _ladder.EMPHASIS
    assert calls["call-1"].get_color() == _ladder.INK


def test_the_rst_is_emphasised_and_nothing_else():
    shapes = arrows(_ladder.ladder(seed_run()))
    assert [a.get_linewidth() > 2 for a in shapes] == [False] * 6 + [True]
    assert shapes[-1].get_edgecolor() == pytest.approx((0xCF / 255, 0x22 / 255, 0x2E / 255, 1))
    plain = arrows(_ladder.ladder(seed_run(), emphasise=None))
    assert not any(a.get_linewidth() > 2 for a in plain)


def test_alt_text_tells_the_same_story_and_is_the_figures_title():
    run = seed_run()
    alt = _ladder.ladder_alt(run)
    assert alt.startswith("Ladder diagram of seed, client on the left, server on the right: client sends SYN; "
                          "server sends SYN-ACK; client sends ACK; client is ESTABLISHED and server is "
                          "ESTABLISHED; client sends FIN-ACK; client close(); server sends ACK;")
    assert "server sends PSH-ACK with 1 byte; client sends RST (emphasised); server send #1 = 1;" in alt
    assert alt.endswith("server send #2 = EPIPE.")
    assert _ladder.ladder(run).axes[0].get_title(loc="left") == alt  # sphinx-gallery's :alt:


def test_figure_fits_a_phone_and_draws_its_own_light_card():
    fig = _ladder.ladder(seed_run())
    width, height = fig.get_size_inches()
    assert width == 6.5 and height < 7.5
    sizes = {t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and a.get_visible())}
    assert min(sizes) >= 9
    assert fig.get_facecolor()[3] == 0  # transparent outside the card only
    assert drawn(fig, "card")["card"].get_facecolor()[:3] == pytest.approx((0xF6 / 255, 0xF8 / 255, 0xFA / 255))
    fig.savefig(io.BytesIO(), format="png")  # renders without warnings (they are errors here)


@pytest.mark.parametrize(("flags", "words"), [
    ("S", "SYN"), ("S.", "SYN-ACK"), (".", "ACK"), ("F.", "FIN-ACK"), ("FP.", "FIN-PSH-ACK"),
    ("R", "RST"), ("R.", "RST-ACK"), ("none", "no flags"),
])
def test_flag_letters_become_words(flags, words):
    assert _ladder.flag_words(flags) == words


def test_without_capture_states_and_calls_are_still_drawn_and_the_gap_is_said():
    fig = _ladder.ladder(seed_run(frames=(), capture=False))
    assert arrows(fig) == []
    assert texts(fig, "state-left-") == ["ESTABLISHED", "FIN-WAIT-2", "CLOSED"]
    assert texts(fig, "call-")[-1] == "send #2 = EPIPE"
    assert "no packets: namespaces are refused here" in texts(fig, "note-")


def test_packets_of_other_connections_are_left_out_and_counted():
    other = [(T0 + 100 * US, frame(50001, 4321, "S", 5)), (T0 + 110 * US, frame(4321, 50001, "SA", 7, 6))]
    fig = _ladder.ladder(seed_run(frames=sorted(PACKETS + other)))
    assert len(arrows(fig)) == 7
    assert "2 packet(s) of other connections not shown" in texts(fig, "note-")


def linger_zero(lab):
    """The client aborts: close() with SO_LINGER {1, 0} sends an RST instead of a FIN."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 4321))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", 4321))
    server, _ = listener.accept()
    lab.snapshot("connected")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    lab.call(client.close, label="close()")
    lab.wait_packet("R.")  # an abort's reset also acknowledges
    lab.snapshot("after the reset")
    lab.call(server.recv, 1, label="recv")


def test_ladder_of_a_real_run_matches_its_packets_states_and_calls():
    run = socklab.run(linger_zero)
    if not run.isolation.capture:
        pytest.skip(f"no packet capture here: {run.isolation.reason}")
    fig = _ladder.ladder(run)
    assert len(arrows(fig)) == len(run.packets)
    labels = drawn(fig, "packet-")
    assert [labels[f"packet-{p.index}-label"].get_text() for p in run.packets] == [
        _ladder.flag_words(p.flags) for p in run.packets]
    assert [_ladder.flag_words(p.flags) for p in run.packets] == ["SYN", "SYN-ACK", "ACK", "RST-ACK"]
    assert [a.get_linewidth() > 2 for a in arrows(fig)] == [False, False, False, True]
    if run.kernel_events:  # as root: every state the kernel recorded, where it happened
        assert texts(fig, "state-left-") == ["SYN-SENT", "ESTABLISHED", "CLOSED"]
        assert texts(fig, "state-right-") == ["SYN-RECEIVED", "ESTABLISHED", "CLOSED"]
        assert drawn(fig, "packet-3-reason")["packet-3-reason"].get_text() == "kernel's reason: TCP_STATE"
    else:  # the snapshots' states
        assert texts(fig, "state-left-") == ["ESTABLISHED", "CLOSED"]
        assert texts(fig, "state-right-") == ["ESTABLISHED", "CLOSED"]
    assert texts(fig, "call-") == ["close()", "recv = ECONNRESET"]
    fig.savefig(io.BytesIO(), format="png")


def rst_held_on_the_link(lab):
    """The seed's scenario on two hosts, the server's RST held on the link while the client sends twice more."""
    listener, client, server = scenarios.connected_across(lab)
    lab.call(server.close, label="close")
    lab.wait_packet("F.")
    lab.wait_state(client, "CLOSE_WAIT")
    lab.link.hold(lambda p: "R" in p.flags, count=1)
    lab.call(client.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.link.wait_held(1)
    lab.call(client.send, b"b", socket.MSG_NOSIGNAL, label="send #2")
    lab.call(client.send, b"c", socket.MSG_NOSIGNAL, label="send #3")
    lab.link.release()
    lab.wait_packet("R")
    lab.wait_state(client, None)
    lab.call(client.send, b"d", socket.MSG_NOSIGNAL, label="send #4")


def test_across_a_link_an_arrow_lands_where_the_packet_left_the_link():
    run = socklab.run(rst_held_on_the_link, wire=socklab.Wire(delay=0.01), kernel_events=False)
    fig = _ladder.ladder(run)
    y = {g: a.get_position()[1] for g, a in drawn(fig, "call-").items() if hasattr(a, "get_position")}
    rst = next(p for p in run.packets if "R" in p.flags)
    (_, start), (_, end) = drawn(fig, f"packet-{rst.index}")[f"packet-{rst.index}"]._posA_posB
    index = {c.label: i for i, c in enumerate(run.calls)}
    assert [c.outcome for c in run.calls[1:]] == ["1", "1", "1", "EPIPE"]
    assert start < y[f"call-{index['send #3']}"] < end < y[f"call-{index['send #4']}"]  # sends under the RST in flight
    assert any("one-way delay 10 ms" in t.get_text() for t in drawn(fig, "note-").values())


def test_a_packet_lost_on_the_link_is_crossed_out_halfway():
    run = Run("lost", [
        Started("6.18.0", "netns", True, "", "", T0),
        _records_link([(0, "client", link_frame("192.0.2.1", "192.0.2.2", 50000, 4321, "S", 1000), "delivered", 5),
                       (1, "server", link_frame("192.0.2.2", "192.0.2.1", 4321, 50000, "SA", 9000, 1001), "dropped",
                        None)]),
        Finished(T0 + 1000 * US),
    ])
    fig = _ladder.ladder(run)
    lost = drawn(fig, "packet-1-lost")
    assert lost, "the dropped SYN-ACK is crossed out"
    x, _ = lost["packet-1-lost"].get_xydata()[0]
    assert x == pytest.approx(sum(_ladder._X) / 2)
    assert "which the link drops" in run.ladder_alt()
    assert "DROPPED by the link" in str(run.trace())


def link_frame(src, dst, sport, dport, flags, seq, ack=0):
    return bytes(Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack))


def _records_link(frames):
    from socklab._records import LinkFrames
    from socklab._wire import LinkFrame

    settings = {"delay": 0.005, "realtime relay": True,
                "hosts": {"client": {"ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "sysctls": {}},
                          "server": {"ipv4": "192.0.2.2", "ipv6": "2001:db8::2", "sysctls": {}}}}
    return LinkFrames(tuple(
        LinkFrame(i, sender, "server" if sender == "client" else "client", T0 + i * 10 * US,
                  None if landed is None else T0 + i * 10 * US + landed * 1000 * US, fate,
                  "a rule" if fate == "dropped" else None, data)
        for i, sender, data, fate, landed in frames), settings)


def test_what_became_of_a_lost_packet_is_written_clear_of_the_rows_after_it():
    """On a two-hosts run, a packet the link drops ends in a cross with its fate written under it;
    the call just after it (the next send) must not be written over that text."""
    def dropped_then_sent_again(lab):
        listener, client, server = scenarios.connected_across(lab)
        lab.link.drop(lambda p: p.length > 0, count=1, name="the first byte")
        lab.call(client.send, b"a", label="send of the first byte")
        lab.call(client.send, b"b", label="send of the second byte")
        lab.wait_packet(".", sport=4321, after=0)  # the ACK of the byte sent again
        listener.close(), server.close()

    run = socklab.run(dropped_then_sent_again, wire=socklab.Wire(delay=0.005), kernel_events=False)
    fig = _ladder.ladder(run)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (fate,) = [a for g, a in drawn(fig, "packet-").items() if g.endswith("-fate")]
    assert fate.get_text() == "dropped by the link"
    others = [a for a in fig.findobj(lambda a: hasattr(a, "get_text") and a is not fate and a.get_text())]
    box = fate.get_window_extent(renderer)
    assert [a.get_text() for a in others if a.get_window_extent(renderer).overlaps(box)] == []


def test_the_reason_of_a_reset_across_a_link_is_written_where_it_lands_clear_of_the_next_rows(monkeypatch):
    """A reset's reason goes under its arrow's end; on a link that end is rows below its start,
    where the call that learns of the reset is written: the reason gets a row of its own there."""
    import scenarios

    run = socklab.run(scenarios.across_a_round_trip, wire=socklab.Wire(delay=0.005), kernel_events=False)
    rst = next(p for p in run.packets if p.flags == "R")
    monkeypatch.setattr(_ladder, "reset_reasons", lambda run: {rst.index: "TCP_TIMEWAIT_SOCKET"})
    fig = _ladder.ladder(run)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    reason = drawn(fig, f"packet-{rst.index}-reason")[f"packet-{rst.index}-reason"]
    box = reason.get_window_extent(renderer)
    others = [a for a in fig.findobj(lambda a: hasattr(a, "get_text") and a is not reason and a.get_text())]
    assert [a.get_text() for a in others if a.get_window_extent(renderer).overlaps(box)] == []
