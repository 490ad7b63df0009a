from calmops.core.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, BreakerState

POLICY = BreakerPolicy(max_failures=3, cooldown_seconds=10, max_cooldown_seconds=25, half_open_trials=1)


def test_opens_after_max_consecutive_failures_only():
    s = BreakerState()
    s.record_failure(POLICY, "x", now=0)
    s.record_success(POLICY, now=1)  # a success resets the count
    for t in range(3):
        assert s.state == CLOSED
        s.record_failure(POLICY, "x", now=10 + t)
    assert s.state == OPEN and s.next_retry_at == 12 + 10


def test_half_opens_after_cooldown_and_closes_on_success():
    s = BreakerState()
    for t in range(3):
        s.record_failure(POLICY, "x", now=t)
    assert not s.allows_training(POLICY, now=5)
    assert s.allows_training(POLICY, now=12) and s.state == HALF_OPEN
    s.record_success(POLICY, now=13)
    assert s.state == CLOSED and s.consecutive_failures == 0
    assert [h["to"] for h in s.history] == [OPEN, HALF_OPEN, CLOSED]


def test_a_run_that_trains_nothing_while_open_leaves_the_failures_that_opened_it_on_show():
    s = BreakerState()
    for t in range(3):
        s.record_failure(POLICY, "x", now=t)
    assert not s.allows_training(POLICY, now=5)
    s.record_success(POLICY, now=5)  # e.g. a file without drift, decided while open
    assert s.state == OPEN and s.consecutive_failures == 3
    assert s.allows_training(POLICY, now=12)
    s.record_failure(POLICY, "again", now=12)  # the half-open trial fails: the count goes on
    assert s.state == OPEN and s.consecutive_failures == 4 and "(4 consecutive failures;" in s.history[-1]["reason"]


def test_failure_while_half_open_reopens_with_doubled_capped_cooldown():
    s = BreakerState()
    for t in range(3):
        s.record_failure(POLICY, "x", now=t)
    cooldowns = [s.next_retry_at - s.opened_at]
    for _ in range(3):
        assert s.allows_training(POLICY, now=s.next_retry_at)
        s.record_failure(POLICY, "again", now=s.next_retry_at)
        cooldowns.append(s.next_retry_at - s.opened_at)
    assert cooldowns == [10, 20, 25, 25]  # 10·2^k, capped at 25


def test_reset_closes_and_clears():
    s = BreakerState()
    for t in range(3):
        s.record_failure(POLICY, "x", now=t)
    s.reset(now=4)
    assert s.state == CLOSED and s.next_retry_at is None and s.times_opened == 0
