"""A publish step to the default exchange (`exchange: ""`): the routing key names the queue, as for any AMQP client."""

from __future__ import annotations

import json

from test_bus import dlq, relay_route


def default_exchange_route(uid: str, queue: str) -> str:
    steps = f'  - json_to_xml: {{root: Voucher}}\n  - publish: {{exchange: "", routing_key: {queue}}}\n'
    return relay_route(uid, steps)


def test_a_publish_to_the_default_exchange_lands_once_in_the_queue_named_by_the_key(bus, run_routes, uid):
    bus.listen(f"archive-{uid}")  # a plain queue: bound to nothing but the default exchange
    # on RabbitMQ, declaring "" would close the channel (ACCESS_REFUSED): the route starting shows it is skipped
    run_routes({"routes/r.yaml": default_exchange_route(uid, f"archive-{uid}")})
    ids = [bus.send(f"in-{uid}", "x", json.dumps({"no": i}).encode()) for i in range(5)]
    got = bus.wait_for(f"archive-{uid}", 5)
    bus.settle()
    assert sorted(d.message_id for d in bus.received[f"archive-{uid}"]) == sorted(ids)
    assert all(d.body.startswith(b"<") and b"<Voucher>" in d.body for d in got)


def test_a_key_naming_no_queue_is_dead_lettered_with_the_same_clear_reason(bus, run_routes, uid):
    run_routes({"routes/r.yaml": default_exchange_route(uid, f"missing-{uid}")})
    bus.listen(dlq(uid))
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-U"}', message_id="U-1")
    [letter] = bus.wait_for(dlq(uid), 1)
    assert letter.message_id == "U-1"
    assert letter.headers["x-esb-reason"].startswith("no queue is bound to the default exchange")
    assert f"'missing-{uid}'" in letter.headers["x-esb-reason"]
