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


def test_default_syn_schedule_is_linear_first_and_fails_at_131_seconds():
    assert _timers.syn_schedule() == ([0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67], 131)


def test_one_syn_retry_under_linear_timeouts_sends_three_syns_and_fails_at_3_seconds():
    assert _timers.syn_schedule(1) == ([0, 1, 2], 3)
    assert _timers.syn_schedule(3, 0) == ([0, 1, 3, 7], 15)  # the doubling schedule of older kernels


def test_backoff_doubles_up_to_the_maximum():
    assert _timers.backoff(0.25, 4) == [0.25, 0.5, 1.0, 2.0]
    assert _timers.backoff(100, 3) == [100, 120, 120]


def test_a_timing_inside_its_tolerance_returns_the_seconds_measured():
    assert _timers.within("ETIMEDOUT", 0, 1_200_000_000, 1.0, 0.3) == pytest.approx(1.2)


def test_a_timing_outside_its_tolerance_says_what_was_claimed():
    with pytest.raises(_timers.TimingError, match=r"ETIMEDOUT: took 1.400 s, claimed 1 \+/- 0.3 s"):
        _timers.within("ETIMEDOUT", 0, 1_400_000_000, 1.0, 0.3)
