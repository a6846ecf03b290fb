"""Claims: checked against values and states, broken ones named, unchecked ones said."""

import pytest

from builders import call, seed_run
from socklab import ClaimError
from socklab._records import Finished, Started, Value
from socklab._run import Run
from test_trace import SEED


def test_true_claims_pass():
    run = seed_run(SEED)
    run.expect(calls={"send #1": 1, "server: send #2": "EPIPE"}, flow=run.flow(),
               states={"after close": {"client": "FIN-WAIT-2", "server": ("CLOSE_WAIT", 1)},
                       "after send": {"client": None}})
    assert run.unchecked == []


def test_a_broken_call_claim_names_the_call_and_both_outcomes():
    with pytest.raises(ClaimError, match=r"call 'send #2': the page says 'EPIPE', the kernel returned 1"):
        seed_run(SEED, second_send=1).expect(calls={"send #2": "EPIPE"})


def test_call_claims_compare_values_not_their_text():
    run = Run("v", [Started("6.18.0", "netns", True, "", "", 0), call("recv", 1, b"a"), Finished(2)])
    run.expect(calls={"recv": b"a"})
    with pytest.raises(ClaimError, match=r"the page says \"b'a'\", the kernel returned b'a'"):
        run.expect(calls={"recv": "b'a'"})


def test_recorded_values_can_be_claimed():
    run = Run("v", [Started("6.18.0", "netns", True, "", "", 0), Value("sent", 1, (8192, "b''")), Finished(2)])
    run.expect(values={"sent": (8192, "b''")})
    with pytest.raises(ClaimError, match=r"value 'sent': the page says 1, the run recorded \(8192, \"b''\"\)"):
        run.expect(values={"sent": 1})


def test_a_broken_state_claim_names_the_moment_and_socket_in_ss_spelling():
    with pytest.raises(ClaimError, match=r"state of server at 'after close': the page says CLOSE-WAIT, "
                                         r"the kernel shows ESTAB"):
        seed_run(SEED, server_state="ESTABLISHED").expect(states={"after close": {"server": "CLOSE_WAIT"}})


def test_a_broken_flow_claim_shows_a_diff():
    with pytest.raises(ClaimError, match=r"(?s)packet flow differs.*-client \[F\.\].*\+client \[R\]"):
        seed_run(SEED).expect(flow=["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]",
                                    "server [P.]", "client [F.]"])


def test_every_broken_claim_is_listed_with_the_kernel_release():
    with pytest.raises(ClaimError, match=r"2 claim\(s\) of scenario 'seed' broke on Linux 6.18.0") as info:
        seed_run(SEED).expect(calls={"send #1": 0, "send #2": "ECONNRESET"})
    assert "send #1" in str(info.value) and "send #2" in str(info.value)


def test_unknown_snapshots_list_the_known_ones():
    with pytest.raises(KeyError, match="no snapshot labelled 'later'.*'after send'"):
        seed_run(SEED).expect(states={"later": {"client": None}})


def test_state_claims_can_check_more_columns():
    run = seed_run(SEED)
    run.expect(states={"after close": {"server": {"state": "CLOSE-WAIT", "recv_q": 1, "send_q": 0, "timer": "",
                                                  "local": "127.0.0.1:4321"}}})
    with pytest.raises(ClaimError, match="server at 'after close': the page says send_q 5, the kernel shows 0"):
        run.expect(states={"after close": {"server": {"state": "CLOSE_WAIT", "send_q": 5}}})


def test_packet_claims_check_fields_of_one_packet():
    run = seed_run(SEED)
    run.expect(packets={6: {"flags": "R", "seq": 2, "ip": "IP"}})
    with pytest.raises(ClaimError, match=r"packet 6 \(R\) ack: the page says 1, the trace has None"):
        run.expect(packets={6: {"ack": 1}})
    with pytest.raises(ClaimError, match="packet 9: the page describes it, the trace has 7 packets"):
        run.expect(packets={9: {"flags": "R"}})


def test_packet_claims_without_capture_are_unchecked_never_passed_nor_broken(capsys):
    run = Run("blind", [Started("6.18.0", "none", False, "packet capture refused (EPERM)", "run as root", 0),
                        call("send", 1, 1), Finished(2)])
    run.expect(calls={"send": 1}, flow=["client [S]"], packets={0: {"flags": "S"}})
    assert len(run.unchecked) == 2
    assert "packet flow client [S] (no packet capture (packet capture refused (EPERM)); fix: run as root)" in \
        run.unchecked[0]
    assert "2 claim(s) of scenario 'blind' UNCHECKED" in capsys.readouterr().err
    assert "UNCHECKED claim: the packet flow client [S]" in str(run.about())
    with pytest.raises(ClaimError, match="call 'send'"):  # what can be checked still is
        run.expect(calls={"send": 2}, flow=["client [S]"])


def test_an_exception_without_errno_is_claimed_by_its_name_and_a_wrong_claim_names_its_message():
    raised = call("getresponse()", 1)
    raised = type(raised)(**{**raised.__dict__, "value": None, "returned": None,
                             "exception": "http.client.RemoteDisconnected",
                             "message": "Remote end closed connection without response"})
    run = Run("v", [Started("6.18.0", "netns", True, "", "", 0), raised, Finished(2)])
    run.expect(calls={"getresponse()": "http.client.RemoteDisconnected"})
    with pytest.raises(ClaimError, match=r"the page says 'ECONNRESET', the call raised http.client.RemoteDisconnected: "
                                         r"Remote end closed connection without response"):
        run.expect(calls={"getresponse()": "ECONNRESET"})
