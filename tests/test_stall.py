"""StallWatch: a connection that acknowledges nothing while toxcore says up (toxbridge/stall.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from toxbridge.stall import StallWatch


def run(watch: StallWatch, start: float, seconds: float, *, in_flight: bool = True,
        acked: int = 0, step: float = 0.01) -> float | None:
    """Observe every ``step`` for ``seconds``; the time it first said stuck, or None."""
    t = start
    for i in range(int(seconds / step)):
        t = start + i * step
        watch.observe(t, in_flight, acked)
        if watch.stuck(t):
            return t
    return None


def test_nothing_acknowledged_for_20_seconds_is_a_stall() -> None:
    w = StallWatch(seconds=20)
    t = run(w, 1000.0, 30)
    assert t is not None and 1019.99 <= t <= 1020.02
    assert 19.9 <= w.waited <= 20.1


def test_acks_that_keep_coming_are_progress_however_slow() -> None:
    w = StallWatch(seconds=20)
    t, acked = 1000.0, 0
    for _ in range(12):  # one ack every 10 s for 2 minutes
        assert run(w, t, 10, acked=acked) is None
        t, acked = t + 10, acked + 1000


def test_nothing_in_flight_is_never_a_stall() -> None:
    w = StallWatch(seconds=20)
    assert run(w, 1000.0, 60, in_flight=False) is None
    assert not w.stuck(1060.0) and w.waited == 0.0


def test_the_wait_starts_when_data_goes_out_not_at_the_last_ack() -> None:
    # Idle for a minute after the last ack, then data in flight: 20 s from then.
    w = StallWatch(seconds=20)
    run(w, 1000.0, 1, acked=5)
    assert run(w, 1001.0, 60, in_flight=False, acked=5) is None
    t = run(w, 1061.0, 30, acked=5)
    assert t is not None and t >= 1080.99


def test_time_the_loop_did_not_watch_is_not_counted() -> None:
    # Frozen for 35 s with data in flight (SIGSTOP): on waking, the acks may wait to be read.
    w = StallWatch(seconds=20, gap=2)
    assert run(w, 1000.0, 10) is None
    assert not w.stuck(1045.0)  # asked before observing: not watched since 1010
    assert run(w, 1045.0, 19) is None
    assert run(w, 1064.0, 2) is not None


def test_reset_forgets_the_wait() -> None:
    w = StallWatch(seconds=20)
    assert run(w, 1000.0, 19) is None
    w.reset()
    assert run(w, 1019.0, 19) is None


@given(st.lists(st.tuples(st.floats(0.001, 1.5), st.booleans(), st.booleans()),
                min_size=1, max_size=300))
def test_stuck_only_after_seconds_of_watched_wait_without_an_ack(steps) -> None:
    """Against a plain model: stuck iff in flight, watched (gaps <= 2 s) and unacked for 20 s."""
    w = StallWatch(seconds=20, gap=2)
    t, acked, since, last = 1000.0, 0, None, None
    for dt, in_flight, ack in steps:
        t += dt * 10
        acked += ack
        gap = last is not None and t - last > 2
        if not in_flight:
            since = None
        elif since is None or ack or gap:
            since = t
        last = t
        w.observe(t, in_flight, acked)
        assert w.stuck(t) == (since is not None and t - since >= 20)
