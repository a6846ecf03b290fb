"""Claims: what a page says the kernel did, checked against what it did.

Theory of operation
-------------------
A page states its claims in data (``run.expect(calls=..., flow=..., states=...)``)
next to the prose that makes them, and the docs build runs them: a claim the
kernel contradicts raises ``ClaimError`` naming every broken claim, which fails
the build on that page. Nothing is compared as text that exists as a value:
a call's claim is checked against the value it returned (or the errno name it
raised), a state against a ``State``.

Some claims cannot be checked in every environment: without packet capture, a
claim about packets has nothing to be checked against. Such a claim is neither
passed nor broken: it is *unchecked*, kept on the run (``Run.unchecked``),
printed in its provenance table, and written to stderr so a build log shows it.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import _degraded, _events, _roles
from ._netns import FIX_CAPTURE
from ._observed import Observed
from ._states import SocketRow
from ._vocab import Endpoint, State


class ClaimError(AssertionError):
    """The kernel did not do what the page says."""


def check(run: Observed, *, calls: Mapping[str, object] | None = None, values: Mapping[str, object] | None = None,
          flow: Sequence[str] | None = None, states: Mapping[str, Mapping[str, object]] | None = None,
          packets: Mapping[int, Mapping[str, object]] | None = None,
          killed_by: str | None = None, resets: Sequence[tuple[str, str]] | None = None,
          transitions: Mapping[str, Sequence[str | State]] | None = None,
          counters: Mapping[str, int] | None = None) -> tuple[list[str], list[str]]:
    """(broken, unchecked): the claims the kernel contradicts, and those it could not be asked."""
    broken: list[str] = []
    unchecked: list[str] = []
    calls, values, states, unreached = _degraded.reached(run, calls, values, states)
    unchecked += unreached
    if _degraded.stopped_at(run.records):  # what the whole run did: it did not do it all
        why = f"the run stopped early: {_degraded.stopped_at(run.records)}"
        unchecked += [f"{what} ({why})" for what, claimed in (
            ("the packet flow", flow), ("the packets", packets), ("the resets", resets),
            ("the transitions", transitions), ("the counters", counters)) if claimed is not None]
        flow = packets = resets = transitions = counters = None
    if (resets is not None or transitions) and not run.kernel_events:
        why = f"no kernel events ({run.events_unavailable}); fix: {run.events_fix or 'run as root'}"
        if resets is not None:
            unchecked.append(f"the resets and their reasons {list(resets)} ({why})")
        unchecked += [f"the transitions of {role} ({why})" for role in transitions or {}]
        resets, transitions = None, None
    if resets is not None and "reset reasons" in run.events_missing:
        unchecked.append(f"the reasons of the resets {list(resets)} (this kernel records none: "
                         f"{run.events_missing['reset reasons']})")
        resets = [(who, "") for who, _reason in resets] if resets else resets
    if resets is not None:
        broken += _check_resets(run, resets)
    lost = _events.lost(run) if transitions else {}
    for role, wanted_states in (transitions or {}).items():
        want_states = [State.parse(s) for s in wanted_states]
        got_states = _events.states(run, role)
        if got_states != want_states:
            said = (f"transitions of {role}: the page says {' -> '.join(s.kernel for s in want_states)}; "
                    f"the kernel recorded {' -> '.join(s.kernel for s in got_states) or 'none'}")
            if role in lost:  # the record is provably short: the kernel did not contradict the page
                unchecked.append(f"{said}, but this run's record of them is incomplete ({'; '.join(lost[role])}; "
                                 f"a known, rare loss: see socklab._kernel)")
            else:
                broken.append(said)
    if counters is not None:
        if run.counters is None:
            unchecked.append(f"the counters {dict(counters)} (the run read no counters)")
        else:
            for counter, moved in counters.items():
                if run.counters.get(counter, 0) != moved:
                    broken.append(f"counter {counter}: the page says +{moved}, the namespace's counter moved by "
                                  f"{run.counters.get(counter, 0)}")
    for key, want in (calls or {}).items():
        call = _roles.find_call(run, key)
        if call.errno is not None:
            if want != call.errno:
                broken.append(f"call {key!r}: the page says {want!r}, the kernel raised {call.errno}")
        elif call.exception is not None:  # an exception with no errno: claimed by its name
            if want != call.exception:
                broken.append(f"call {key!r}: the page says {want!r}, the call raised {call.exception}: "
                              f"{call.message}")
        elif not call.kept:
            broken.append(f"call {key!r}: its value was too large to keep ({call.returned}); "
                          "claim something smaller, e.g. lab.record() a length")
        elif call.value != want:
            broken.append(f"call {key!r}: the page says {want!r}, the kernel returned {call.value!r}")
    for name, want in (values or {}).items():
        got = run.value(name)
        if got != want:
            broken.append(f"value {name!r}: the page says {want!r}, the run recorded {got!r}")
    if (flow is not None or packets) and not run.isolation.capture:
        why = f"no packet capture ({run.isolation.reason}); fix: {run.isolation.fix or FIX_CAPTURE}"
        if flow is not None:
            unchecked.append(f"the packet flow {' '.join(flow)} ({why})")
        for index in packets or {}:
            unchecked.append(f"packet {index} ({why})")
        flow, packets = None, None
    if flow is not None:
        got_flow = _roles.flow(run)
        if list(flow) != got_flow:
            diff = "\n".join(difflib.unified_diff(list(flow), got_flow, "page says", "kernel did", lineterm=""))
            broken.append(f"packet flow differs:\n{diff}")
    for label, wanted in (states or {}).items():
        table = _roles.table(run, label)
        for role, want in wanted.items():
            broken += _check_state(label, role, want, table.get(role), run.port_map)
    for index, fields in (packets or {}).items():
        if index >= len(run.packets):
            broken.append(f"packet {index}: the page describes it, the trace has {len(run.packets)} packets")
            continue
        packet = run.packets[index]
        for field, want in fields.items():
            got = getattr(packet, field)
            if field in ("sport", "dport") and isinstance(want, int):
                want = run.port_map.get(want, want)  # the page's port, as this run used it
            if got != want:
                broken.append(f"packet {index} ({packet.flags}) {field}: the page says {want!r}, "
                              f"the trace has {got!r}")
    if killed_by is not None and run.killed_by != killed_by:
        broken.append(f"the page says the process is killed by {killed_by}; it was "
                      f"{'killed by ' + run.killed_by if run.killed_by else 'not killed'}")
    return broken, unchecked


@contextlib.contextmanager
def claim(run: Observed, text: str, unchecked: list[str], private: bool = False) -> Iterator[None]:
    """Check the claim `text` with the plain code in the block (``Run.claim``): a failed
    assertion is a ``ClaimError`` naming it; what the run did not observe (``_degraded``)
    makes it unchecked, added to `unchecked` and announced on stderr. A `private` claim
    (about the whole socket table, or a fixed port) is unchecked without a private namespace."""
    try:
        with _degraded.claim_block():
            yield
        if private and not run.isolation.private:
            raise _degraded.Unobserved(f"it needs the run's own network namespace: this run shared the host's "
                                       f"sockets and ports with every other program ({run.isolation.reason})")
    except _degraded.Unobserved as e:
        missing = f"{text} ({e})"
    except KeyError as e:  # a snapshot, call or value: a stopped run never reached it
        stopped = _degraded.stopped_at(run.records)
        if not stopped:
            raise
        missing = f"{text} (the run stopped before it: {stopped}; {e.args[0] if e.args else e})"
    except AssertionError as e:
        if private and not run.isolation.private:
            missing = (f"{text} (it needs the run's own network namespace: this run shared the host's sockets "
                       f"and ports with every other program ({run.isolation.reason}); here: {e})")
        else:
            raise ClaimError(f"a claim of scenario {run.name!r} broke on Linux {run.kernel}: {text}: {e}") from None
    else:
        return
    if missing not in unchecked:
        unchecked.append(missing)
    report(run, [], [missing])


def _check_resets(run: Observed, claimed: Sequence[tuple[str, str]]) -> list[str]:
    """Every RST the kernel sent, in order: who sent it, and its reason ("" claims any reason)."""
    recorded = _events.resets(run)
    same = len(recorded) == len(claimed) and all(
        who == sender and (not reason or reason == why)
        for (who, reason), (sender, why, _state) in zip(claimed, recorded, strict=False))
    if same:
        return []
    said = "; ".join(f"{who}: {reason or 'any reason'}" for who, reason in claimed) or "no reset"
    did = "; ".join(f"{who}: {why} ({_events.RESET_REASONS.get(why, 'no comment in rstreason.h')}; "
                    f"sent by a socket in {state.kernel if state else 'no socket'})"
                    for who, why, state in recorded) or "no reset"
    return [f"resets: the page says {said}; the kernel says {did}"]


def report(run: Observed, broken: list[str], unchecked: list[str]) -> None:
    """Raise ``ClaimError`` for broken claims; announce unchecked ones on stderr."""
    if unchecked:
        print(f"socklab: {len(unchecked)} claim(s) of scenario {run.name!r} UNCHECKED on this machine:\n- "
              + "\n- ".join(unchecked), file=sys.stderr)
    if broken:
        raise ClaimError(f"{len(broken)} claim(s) of scenario {run.name!r} broke on Linux "
                         f"{run.kernel}:\n- " + "\n- ".join(broken))


def _check_state(label: str, role: str, want: object, row: SocketRow | None,
                 port_map: Mapping[int, int] | None = None) -> list[str]:
    where = f"state of {role} at {label!r}"
    if want is None:
        return [] if row is None else [f"{where}: the page says gone, the kernel shows {row.state.ss}"]
    fields: dict[str, Any]
    if isinstance(want, str | State):
        fields = {"state": want}
    elif isinstance(want, Mapping):
        fields = dict(want)
    else:
        pair: tuple = tuple(want)  # type: ignore[arg-type]
        fields = {"state": pair[0], "recv_q": pair[1]}
    if row is None:
        said = State.parse(fields["state"]).ss if "state" in fields else "present"
        return [f"{where}: the page says {said}, the socket is not in the table"]
    problems = []
    for field, expected in fields.items():
        if field == "state":
            expected_state = State.parse(expected)
            if row.state.machine is not expected_state.machine:
                problems.append(f"{where}: the page says {expected_state.ss}, the kernel shows {row.state.ss}")
            continue
        got = row.timer_kind if field == "timer" else getattr(row, field)
        if isinstance(got, Endpoint) and isinstance(expected, str):
            got = str(got)  # an endpoint may be claimed as printed: "127.0.0.1:4321"
            expected = _as_used(expected, port_map or {})
        if expected != got:
            problems.append(f"{where}: the page says {field} {expected}, the kernel shows {got}")
    return problems


def _as_used(endpoint: str, port_map: Mapping[int, int]) -> str:
    """An endpoint the page names (``"127.0.0.1:4321"``) with the port this run used for the page's."""
    address, sep, port = endpoint.rpartition(":")
    if sep and port.isdigit() and int(port) in port_map:
        return f"{address}:{port_map[int(port)]}"
    return endpoint
