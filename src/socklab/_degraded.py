"""Where a machine cannot do or see all a page needs: what the run still shows, and says.

Theory of operation
-------------------
A page is written for the full lab: a private network namespace, packet
capture, the kernel's events. Where something is missing, the run still
happens (``_netns`` finds out what is possible) and shows what it could
observe; what it could not is reported *unchecked*, loudly, never as passed
and never as broken. This module holds the three ways a page gets there
without an ``if`` of its own:

* ``sysctl`` (``Lab.sysctl``) sets a setting of the run's own network
  namespace. Without one, socklab never writes the host's: it says so in a
  warning note and records the setting as ``NotSet``. A setting the rest of
  the scenario cannot do without (``required``, the default) stops the
  scenario there: ``NotHere`` is raised in the scenario, its process records
  ``Stopped`` and ends the run normally, with everything it saw up to then.
* ``Run.claim`` (``_claims.claim``) wraps a claim a page checks with plain code
  (``assert``). Inside it (``claiming``), the packets of a run without capture are not an
  empty list (on which ``assert not any(...)`` would pass) but ``Unobserved``;
  so is a snapshot, call or value a stopped run never reached, and a
  ``NotSet`` value. ``Unobserved`` makes the claim unchecked; a failed
  assertion makes it a ``ClaimError`` that names it.
* ``reached`` lets ``_claims.check`` report the claims of ``Run.expect`` about
  what a stopped run never reached, or a ``NotSet`` value, as unchecked.

This module knows the run only by duck typing (it is imported by ``_lab``,
``_run`` and ``_claims``, and imports none of them).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ._netns import FIX_CAPTURE, FIX_NAMESPACES
from ._roles import find_call
from ._rtnl import read_sysctl, write_sysctl


class NotHere(Exception):  # noqa: N818 - it reads as what it says: the scenario cannot go on here
    """Raised in a scenario that cannot go on on this machine; its run stops there, normally."""


class Unobserved(LookupError):
    """What a claim asked for was not observed on this machine (no capture, a stopped run)."""


@dataclasses.dataclass(frozen=True)
class Stopped:
    """The record of a scenario that stopped early: this machine could not do what came next."""

    reason: str
    time_ns: int


@dataclasses.dataclass(frozen=True)
class NotSet:
    """A recorded value in place of a setting this run could not make (no private namespace)."""

    reason: str

    def __repr__(self) -> str:
        return f"<not set: {self.reason}>"


# -- in the scenario's process -------------------------------------------------

def sysctl(lab: Any, name: str, value: object = None, *, required: bool = True) -> str:
    """Read, and with `value` write, the setting `name` (``net.ipv4.tcp_fin_timeout``) of the run's
    own network namespace; return its value now, as ``Host.sysctl`` does (the text it reads).

    Records the value as ``name`` (and, when first writing it, the one before as ``"<name> before"``).
    Without a private namespace the host's setting is never written, nor claimed as the
    page's: the values are recorded as ``NotSet``, a warning note says why, and a `required`
    setting that differs from `value` stops the scenario here (``NotHere``)."""
    before = read_sysctl(name)
    if not lab.isolation.private:
        here = f"this run has no private network namespace, and {name} is the host's ({before})"
        if value is None:
            lab.record(name, NotSet(here))
            return before
        lab.record(f"{name} before", NotSet(here))
        if before == str(value):  # nothing to write: the run has the setting it asks for
            lab.record(name, before)
            return before
        lab.note(f"WARNING: the page sets {name} to {value}: {here}, which socklab never writes. "
                 f"{'The scenario stops here' if required else 'The run goes on with the host value'}; "
                 f"claims about what follows are unchecked. Fix: {lab.isolation.fix or FIX_NAMESPACES}")
        lab.record(name, NotSet(here))
        if required:
            raise NotHere(f"setting {name} to {value} needs the run's own network namespace ({here})")
        return before
    if value is not None:
        first = lab.__dict__.setdefault("_sysctls_written", set())
        if name not in first:  # "before": the namespace's own value, before the scenario changed it
            first.add(name)
            lab.record(f"{name} before", before)
        before = write_sysctl(name, value)
    lab.record(name, before)
    return before


# -- in the parent: claims -------------------------------------------------------

_claiming: contextvars.ContextVar[int] = contextvars.ContextVar("socklab_claiming", default=0)


def claiming() -> bool:
    """True inside a ``Run.claim`` block."""
    return _claiming.get() > 0


@contextlib.contextmanager
def claim_block() -> Iterator[None]:
    """The body of a ``Run.claim`` block: what the run did not observe raises ``Unobserved``."""
    token = _claiming.set(_claiming.get() + 1)
    try:
        yield
    finally:
        _claiming.reset(token)


def packets(run: Any, packets: list) -> list:
    """`packets`, or ``Unobserved`` inside a claim when the run captured none."""
    if claiming() and not run.isolation.capture:
        raise Unobserved(f"no packet capture in run {run.name!r} ({run.isolation.reason}); "
                         f"fix: {run.isolation.fix or FIX_CAPTURE}")
    return packets


def value(run: Any, value: object) -> Any:
    """`value`, or ``Unobserved`` inside a claim when it stands for a setting not made."""
    if claiming() and isinstance(value, NotSet):
        raise Unobserved(f"in run {run.name!r}: {value.reason}")
    return value


def reached(run: Any, calls: Mapping[str, object] | None, values: Mapping[str, object] | None,
            states: Mapping[str, Mapping[str, object]] | None,
            ) -> tuple[dict[str, object], dict[str, object], dict[str, Mapping[str, object]], list[str]]:
    """The claims of ``Run.expect`` this run can be asked, and the others as unchecked claims."""
    left: list[str] = []
    stopped = stopped_at(run.records)
    stop = f"the run stopped before it: {stopped}"
    kept_calls = {}
    for key, want in (calls or {}).items():
        try:
            find_call(run, key)
        except KeyError:
            if not stopped:
                raise
            left.append(f"call {key!r} ({stop})")
            continue
        kept_calls[key] = want
    kept_values = {}
    for name, want in (values or {}).items():
        got = run.values.get(name)
        if isinstance(got, NotSet):
            left.append(f"value {name!r}: {want!r} ({got.reason})")
        elif name not in run.values and stopped:
            left.append(f"value {name!r}: {want!r} ({stop})")
        else:
            kept_values[name] = want
    labels = {s.label for s in run.snapshots}
    kept_states = {}
    for label, wanted in (states or {}).items():
        if label not in labels and stopped:
            left.append(f"the states at {label!r} ({stop})")
        else:
            kept_states[label] = wanted
    return kept_calls, kept_values, kept_states, left


def stopped_at(records: list[object]) -> str:
    """Why the scenario stopped early ("" when it ran to its end)."""
    return next((r.reason for r in records if isinstance(r, Stopped)), "")


def stop_record(e: NotHere) -> Stopped:
    return Stopped(str(e), time.time_ns())
