"""socklab: run a socket scenario on the real kernel and show what happened.

Layout: ``_lab`` runs a scenario in a forked child (``_netns`` isolates it,
``_ports`` gives it reproducible ports that are its own, ``_capture`` records
its packets, ``_states`` its socket tables) and sends plain ``_records`` home;
``_run.Run`` turns them into views (``_render``), a trace (``_trace``) and
checked claims; ``_ladder`` draws them. ``_tcp`` holds RFC 9293's state machine
as a table, which ``_statediagram`` draws; ``_summary`` reads the site-wide
matrix and errno table out of runs.
"""

from ._lab import Lab, ScenarioError, ScenarioKilled, ScenarioTimeout, poll_names, run
from ._netns import Isolation, probe
from ._run import ClaimError, Run
from ._show import show
from ._statediagram import draw_state_diagram
from ._tcp import TRANSITIONS, Transition
from ._tcp import path as state_path

__all__ = [
    "ClaimError",
    "Isolation",
    "Lab",
    "Run",
    "ScenarioError",
    "ScenarioKilled",
    "ScenarioTimeout",
    "TRANSITIONS",
    "Transition",
    "draw_state_diagram",
    "poll_names",
    "probe",
    "run",
    "show",
    "state_path",
]

from ._version import __version__ as __version__

# Public names report themselves as socklab.X in tracebacks and in the docs.
for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__"):
        _obj.__module__ = __name__
del _name, _obj
