"""Two lines of the packet trace, taken apart field by field.

Drawn for reading-output.md while the docs build, from the central scenario run
for the picture: the server's byte ([P.]) and the client's reset ([R]). The
fields the picture explains are checked first (run.expect), so the build fails
if the kernel sends something else. Run it by hand with
``python reading_output_trace_line.py``.
"""

import socket
import textwrap

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

import socklab


def close_then_send(lab):
    listener = socket.create_server(("127.0.0.1", 4321))
    client = socket.create_connection(("127.0.0.1", 4321))
    server, _ = listener.accept()
    client.close()
    lab.wait_packet(".", sport=4321)
    server.send(b"a", socket.MSG_NOSIGNAL)
    lab.wait_packet("R")


run = socklab.run(close_then_send)
data, reset = run.packets[5], run.packets[6]
run.expect(
    packets={
        5: {"flags": "P.", "seq": 1, "length": 1, "ack": 2, "win": 64},
        6: {"flags": "R", "seq": 2, "ack": None, "win": 0, "options": ""},
    }
)
t0 = run.packets[0].time_ns
NAMES = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", ".": "ACK"}


def head(p, say):
    return [
        (f"{(p.time_ns - t0) / 1e9:.6f}", say and "seconds since the\nfirst packet"),
        (p.ip, say and "IPv4"),
        (f"{p.source.address}.{p.source.port}", say and "from address.port"),
        (">", None),
        (f"{p.destination.address}.{p.destination.port}:", say and "to address.port"),
    ]


def fields(p, meaning):
    parts = p.text().split(", ")
    return [(part + "," * (i < len(parts) - 1), meaning[part.split()[0]]) for i, part in enumerate(parts)]


rows = [
    (
        "the server's byte",
        "#1f2328",
        head(data, True),
        fields(
            data,
            {
                "Flags": " + ".join(NAMES[f] for f in data.flags),
                "seq": "from byte 1, up to 2",
                "ack": "next byte it expects from the client",
                "win": "window, unscaled",
                "options": "TCP options (timestamp values left out)",
                "length": "payload bytes",
            },
        ),
    ),
    (
        "the client's answer",
        "#cf222e",
        head(reset, False),
        fields(
            reset,
            {
                "Flags": "RST alone, no ACK",
                "seq": "copied from the ack of the byte",
                "win": "window 0",
                "length": "no payload",
            },
        ),
    ),
]


def wrap(text, meaning):
    return "\n".join(textwrap.fill(part, max(len(text), 12)) for part in meaning.split("\n"))


def height(cells):
    lines = max((wrap(t, m).count("\n") + 1 for t, m in cells if m), default=0)
    return 0.42 + 0.16 * (lines + (lines > 0))


total = 0.3 + sum(0.35 + height(a) + height(b) for _, _, a, b in rows)
fig = plt.figure(figsize=(6.5, total), facecolor="none")  # a light card, as the ladders
ax = fig.add_axes((0, 0, 1, 1), xlim=(0, 6.5), ylim=(total, 0))
ax.axis("off")
ax.add_patch(
    FancyBboxPatch(
        (0.04, 0.04),
        6.42,
        total - 0.08,
        facecolor="#f6f8fa",
        edgecolor="#c4ccd5",
        boxstyle="round,pad=0,rounding_size=0.14",
    )
)
y = 0.3
for title, colour, *lines in rows:
    ax.text(0.2, y, title, fontsize=10, weight="bold", color=colour, va="center")
    y += 0.35
    for cells in lines:
        x = 0.2
        for text, meaning in cells:
            label = wrap(text, meaning) if meaning else ""
            width = max(0.075 * len(text), 0.07 * max(map(len, label.split("\n"))))
            ax.text(
                x + width / 2,
                y,
                text,
                family="monospace",
                fontsize=9,
                ha="center",
                va="center",
                color=colour,
                bbox=None
                if meaning is None
                else {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "#c4ccd5"},
            )
            ax.text(x + width / 2, y + 0.2, label, fontsize=9, va="top", ha="center", color="#4d5661", linespacing=1.05)
            x += width + 0.17
        y += height(cells)

if __name__ == "__main__":
    plt.show()
