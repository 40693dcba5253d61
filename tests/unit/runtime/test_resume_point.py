"""After a crash: where a redelivered message resumes, and how often it has been delivered."""

from __future__ import annotations

from runtime_fakes import delivery

from esb.message import Message
from esb.runtime.attempt import Attempt
from esb.runtime.resume import DeliveryCounter, resume_point
from esb.store import SqliteStore, StepRecord


def test_a_redelivery_resumes_after_the_last_recorded_step_with_its_message():
    progress = (
        StepRecord(0, "validate", {"body": '{"a":1}', "content_type": "application/json"}),
        StepRecord(2, "create-voucher", {"body": '{"a":1,"receipt":7}', "content_type": "application/json",
                                         "headers": {"x-h": "v"}}, {"step": "create-voucher"}),
    )
    attempt = Attempt("r", delivery("m-1"), "m-1", "w:1")
    start, message = resume_point(progress, Message({"a": 1}, message_id="m-1"), attempt)
    assert start == 3
    assert (message.body, dict(message.headers), message.message_id) == ({"a": 1, "receipt": 7}, {"x-h": "v"}, "m-1")
    assert attempt.compensations == [{"step": "create-voucher"}]


def test_without_a_store_redeliveries_are_counted_in_memory_per_route_and_message():
    counter = DeliveryCounter()
    assert [counter.deliveries("r", "m-1") for _ in range(3)] == [2, 3, 4]
    assert counter.deliveries("r", "m-2") == 2
    assert counter.deliveries("other", "m-1") == 2


def test_the_memory_count_forgets_the_oldest_messages_beyond_its_size():
    counter = DeliveryCounter(remembered=2)
    for mid in ("m-1", "m-2", "m-3"):
        counter.deliveries("r", mid)
    assert counter.deliveries("r", "m-1") == 2  # forgotten: counted afresh


def test_with_a_store_redeliveries_are_counted_across_counters(tmp_path):
    path = tmp_path / "idem.sqlite3"
    first = SqliteStore(path)
    assert DeliveryCounter(first).deliveries("r", "m-1") == 2
    second = SqliteStore(path)  # another worker, or this one restarted
    try:
        assert DeliveryCounter(second).deliveries("r", "m-1") == 3
        assert DeliveryCounter(first).deliveries("r", "m-1") == 4
    finally:
        first.close()
        second.close()
