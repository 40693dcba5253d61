"""Metric labels stay bounded: a retry tier is named by its delay, never by a message."""

from esb.observability.metrics import tier


def test_a_tier_is_named_by_its_delay_in_the_largest_whole_unit():
    assert [tier(ms) for ms in (200, 2000, 90_000, 120_000, 900_000, 7_200_000)] == \
        ["0.2s", "2s", "90s", "2m", "15m", "2h"]
