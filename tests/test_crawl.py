"""CrawlWatch: when toxcore's congestion control is stuck at its floor (toxbridge/crawl.py)."""

from __future__ import annotations

from toxbridge.crawl import CrawlWatch


def feed(watch: CrawlWatch, start: float, seconds: int, per_second: int, refuse: bool) -> float:
    """Every 10 ms for ``seconds``: spread ``per_second`` accepted packets, a refusal each
    turn if ``refuse``; returns the time reached."""
    t = start
    for s in range(seconds):
        for turn in range(100):
            t = start + s + turn / 100
            if turn < per_second:
                watch.accepted(t)
            if refuse:
                watch.refused(t)
            if watch.stuck(t):
                return t
    return t


def test_a_crawl_at_4_packets_per_second_is_noticed_after_12_seconds() -> None:
    w = CrawlWatch(seconds=12, rate=8)
    t = feed(w, 1000.0, 30, 4, refuse=True)
    assert 1011.0 <= t < 1013.0 and w.stuck(t)


def test_slow_start_is_not_a_crawl() -> None:
    # toxcore's slow start: ~10 packets/s at first, x1.7 per second, refusing all along.
    w = CrawlWatch(seconds=12, rate=8)
    t, rate = 1000.0, 10.0
    for _ in range(30):
        t = feed(w, t, 1, min(int(rate), 100), refuse=True) + 0.01
        assert not w.stuck(t)
        rate *= 1.7


def test_a_slow_receiver_is_not_a_crawl() -> None:
    # The window is full: the link hands toxcore nothing, toxcore refuses nothing.
    w = CrawlWatch(seconds=12, rate=8)
    t = feed(w, 1000.0, 40, 1, refuse=False)
    assert not w.stuck(t)


def test_refusals_in_only_some_seconds_or_a_gap_do_not_count() -> None:
    w = CrawlWatch(seconds=12, rate=8)
    t = 1000.0
    for s in range(40):  # refusing every other second only
        t = feed(w, 1000.0 + s, 1, 2, refuse=s % 2 == 0)
        assert not w.stuck(t)
    w.reset()
    t = feed(w, 2000.0, 6, 2, refuse=True)
    assert not w.stuck(t + 20)  # 20 idle seconds in the window: not watched long enough


def test_reset_forgets() -> None:
    w = CrawlWatch(seconds=12, rate=8)
    t = feed(w, 1000.0, 30, 4, refuse=True)
    assert w.stuck(t)
    w.reset()
    assert not w.stuck(t)
