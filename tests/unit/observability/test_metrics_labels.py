"""Metric labels stay bounded: a retry tier is named by its delay, never by a message."""

from esb.observability.metrics import tier


def test_a_tier_is_named_by_its_delay_in_the_largest_whole_unit():
    assert [tier(ms) for ms in (200, 2000, 90_000, 120_000, 900_000, 7_200_000)] == \
        ["0.2s", "2s", "90s", "2m", "15m", "2h"]


def value(name: str, **labels) -> float | None:
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value(name, labels)


def test_a_pollers_rounds_files_and_last_success_are_counted():
    import time

    from esb.observability.metrics import MetricsMiddleware
    metrics, where = MetricsMiddleware(), {"adapter": "bank-t", "inbound": "statements-t"}
    metrics.on_poll("bank-t", "statements-t", 3, True)
    metrics.on_poll("bank-t", "statements-t", 0, False)
    assert value("esb_sftp_polls_total", **where, outcome="ok") == 1
    assert value("esb_sftp_polls_total", **where, outcome="failed") == 1
    assert value("esb_sftp_files_taken_total", **where) == 3
    assert time.time() - value("esb_sftp_last_successful_poll_timestamp_seconds", **where) < 60


def test_the_running_configuration_and_its_reloads_are_shown():
    from esb.observability.metrics import MetricsMiddleware
    from esb.runtime.reload import ReloadResult
    metrics = MetricsMiddleware()
    before = value("esb_config_reloads_total", outcome="refused") or 0
    metrics.on_reload(ReloadResult("loaded", "aaaa11112222"))
    metrics.on_reload(ReloadResult("refused", "bbbb", errors=("routes/x.yaml:4:3: bad",)))
    assert value("esb_config_reloads_total", outcome="refused") == before + 1
    assert value("esb_config_reload_problems") == 1
    metrics.on_reload(ReloadResult("reloaded", "cccc33334444"))
    shown = [value("esb_config_info", config_hash=h) for h in ("aaaa11112222", "cccc33334444")]
    assert shown == [0, 1]
    assert value("esb_config_reload_problems") == 0
