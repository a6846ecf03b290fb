"""socklab: run a socket scenario on the real kernel and show what happened.

Layout: ``_runner.run`` runs a scenario in a forked child (``_supervisor``; the
scenario gets a ``_lab.Lab``; ``_netns`` isolates it,
``_ports`` gives it reproducible ports that are its own, ``_capture`` records
its packets, ``_states`` its socket tables) and sends plain ``_records`` home.
``_vocab`` holds the shared words (``State``,
``Endpoint``). ``_run.Run`` is the run's data (``_observed``) with one method
per job, each done by its own module: ``_roles`` names sockets, ``_views``
renders tables and traces (``_render``, ``_trace``), ``_claims`` checks a
page's claims, ``_ladder`` draws. ``_tcp`` holds RFC 9293's state machine as a
table, which ``_statediagram`` draws.
"""

from . import _timers as timers
from ._claims import ClaimError
from ._hosts import Host, TwoHosts, Wire, WireUnavailable, sent_by
from ._lab import Lab, poll_names
from ._netns import Isolation, probe
from ._records import Call, Snapshot, SocketRef
from ._render import Table
from ._run import Run
from ._runner import ScenarioError, ScenarioKilled, ScenarioTimeout, run
from ._show import show
from ._statediagram import draw_state_diagram
from ._states import SocketRow
from ._tcp import TRANSITIONS, Transition
from ._tcp import path as state_path
from ._trace import Packet
from ._vocab import Endpoint, State

__all__ = [
    "Call",
    "ClaimError",
    "Endpoint",
    "Host",
    "Isolation",
    "Lab",
    "Packet",
    "Run",
    "ScenarioError",
    "ScenarioKilled",
    "ScenarioTimeout",
    "Snapshot",
    "SocketRef",
    "SocketRow",
    "State",
    "TRANSITIONS",
    "Table",
    "Transition",
    "TwoHosts",
    "Wire",
    "WireUnavailable",
    "draw_state_diagram",
    "poll_names",
    "probe",
    "run",
    "sent_by",
    "show",
    "state_path",
    "timers",
]

from ._version import __version__ as __version__

# Public names report themselves as socklab.X in tracebacks and in the docs.
for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__"):
        _obj.__module__ = __name__
del _name, _obj
