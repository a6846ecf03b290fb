"""SO_LINGER off, {1, 0} and {1, 1}, each closing on a reader that has stopped reading.

Drawn for the page "SO_LINGER, and what it does not do" (so-linger.md) while the
docs build. Each run's claims are checked first, so the build fails if the
kernel disagrees with the page. Run it by hand with ``python so_linger_settings.py``.
"""

import socket
import struct
import time

import matplotlib.pyplot as plt

import socklab

PORT = 4321


def stalled_reader(lab, linger):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small buffers:
    listener.bind(("127.0.0.1", PORT))  # a few packets fill them
    listener.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.connect(("127.0.0.1", PORT))
    server, _ = listener.accept()
    client.setblocking(False)
    sent = 0
    try:
        while True:  # the server does not read: fill its receive and our send buffer
            sent += client.send(b"x" * 1000)
    except BlockingIOError:
        pass
    client.setblocking(True)
    lab.record("bytes sent", sent)
    if linger:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", *linger))
    start = time.monotonic()
    lab.call(client.close, label="close()")
    lab.record("close() ms", (time.monotonic() - start) * 1000)
    lab.snapshot("after close()")
    server.settimeout(5)
    got, end = 0, "?"
    try:
        while data := server.recv(65536):
            got += len(data)
        end = "b''"
    except OSError as e:
        end = type(e).__name__
    lab.record("server read", (got, end))


SETTINGS = {"off (default)": None, "{1, 0}": (1, 0), "{1, 1}": (1, 1)}
results = {}
for name, linger in SETTINGS.items():
    run = socklab.run(lambda lab, linger=linger: stalled_reader(lab, linger), name=name)
    sent, ms = run.value("bytes sent"), run.value("close() ms")
    got, end = run.value("server read")
    results[name] = (sent, ms, got, end)
    if linger == (1, 0):
        assert ms < 100 and got < sent and end == "ConnectionResetError", results[name]
        run.expect(calls={"client: close()": None}, states={"after close()": {"client": None}})
        assert run.flow()[-1] == "client [R.]"
    else:  # the kernel finishes the job after close() has returned
        assert 900 <= ms < 2000 if linger else ms < 100, results[name]
        assert got == sent and end == "b''", results[name]
        run.expect(calls={"client: close()": None}, states={"after close()": {"client": "FIN_WAIT1"}})
        assert run.states_at("after close()")["client"].send_q > 1  # bytes still unsent

INK, MUTED, GOOD, LOST, CARD = "#1f2328", "#4d5661", "#1a7f37", "#cf222e", "#f6f8fa"
fig, (left, right) = plt.subplots(
    1, 2, figsize=(6.5, 2.6), sharey=True, facecolor=CARD, layout="constrained", gridspec_kw={"width_ratios": [1, 1.25]}
)
names = list(results)[::-1]
for ax in (left, right):
    ax.set_facecolor(CARD)
    ax.tick_params(labelsize=10, colors=INK)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
times = [results[n][1] for n in names]
left.barh(names, times, color=MUTED, height=0.5)
for y, ms in enumerate(times):
    left.text(
        ms + max(times) * 0.03, y, f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms", va="center", fontsize=10, color=INK
    )
left.set_xlim(0, max(times) * 1.45)
left.set_title("close() returned after", fontsize=10, color=INK)
left.set_xlabel("ms", fontsize=10, color=INK)
left.set_ylabel("SO_LINGER", fontsize=10, color=INK)
for y, n in enumerate(names):
    sent, ms, got, end = results[n]
    right.barh(y, got, color=GOOD, height=0.5)
    right.barh(y, sent - got, left=got, color="none", edgecolor=LOST, hatch="///", height=0.5)
    right.text(
        sent * 1.03,
        y,
        "b''" if end == "b''" else "ECONN-\nRESET",
        va="center",
        fontsize=10,
        color=GOOD if end == "b''" else LOST,
    )
right.set_xlim(0, max(r[0] for r in results.values()) * 1.3)
right.set_title("afterwards the reader received", fontsize=10, color=INK)
right.set_xlabel("bytes (hatched: lost)", fontsize=10, color=INK)

if __name__ == "__main__":
    plt.show()
