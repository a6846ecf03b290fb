"""The kernel's retransmission timeouts, computed; timing claims with a tolerance."""

import pytest

from socklab import _timers


def test_default_tcp_retries2_gives_up_after_924_6_seconds():
    assert _timers.retries2_timeout() == pytest.approx(924.6)


def test_short_tcp_retries2_stays_on_the_doubling_part_of_the_curve():
    assert _timers.retries2_timeout(3) == pytest.approx(0.2 * (2**4 - 1))
    assert _timers.retries2_timeout(9) == pytest.approx(0.2 * 1023)  # the last doubling before 120 s
    assert _timers.retries2_timeout(10) == pytest.approx(0.2 * 1023 + 120)


def test_default_tcp_syn_retries_gives_up_after_127_seconds():
    assert _timers.syn_timeout() == pytest.approx(127.0)


def test_backoff_doubles_up_to_the_maximum():
    assert _timers.backoff(0.25, 4) == [0.25, 0.5, 1.0, 2.0]
    assert _timers.backoff(100, 3) == [100, 120, 120]


def test_a_timing_inside_its_tolerance_returns_the_seconds_measured():
    assert _timers.within("ETIMEDOUT", 0, 1_200_000_000, 1.0, 0.3) == pytest.approx(1.2)


def test_a_timing_outside_its_tolerance_says_what_was_claimed():
    with pytest.raises(_timers.TimingError, match=r"ETIMEDOUT: took 1.400 s, claimed 1 \+/- 0.3 s"):
        _timers.within("ETIMEDOUT", 0, 1_400_000_000, 1.0, 0.3)


@pytest.mark.parametrize(("retries", "linear", "sent", "gives_up"), [
    (6, 4, [1, 2, 3, 4, 5, 7, 11, 19, 35, 67], 131),  # Linux 6.5 and later, defaults: 11 SYNs
    (6, 0, [1, 3, 7, 15, 31, 63], 127),  # before 6.5
    (1, 4, [1, 2], 3),  # measured here: SYNs at 0, 1.01, 2.03 s, ETIMEDOUT at 3.05 s
    (2, 4, [1, 2, 3, 4, 5], 7),  # measured: 6 SYNs, ETIMEDOUT at 7.13 s
    (1, 1, [1, 2], 4),  # measured: 3 SYNs, ETIMEDOUT at 4.05 s
    (3, 0, [1, 3, 7], 15),  # measured: 4 SYNs, ETIMEDOUT at 15.47 s
])
def test_the_syn_schedule_keeps_one_second_for_the_linear_timeouts_then_doubles(retries, linear, sent, gives_up):
    assert _timers.syn_schedule(retries, linear) == (sent, gives_up)
