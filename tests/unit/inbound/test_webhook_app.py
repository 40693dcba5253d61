"""The webhook WSGI app against a stand-in broker: what each request is answered and what is published."""

from __future__ import annotations

import io
import json

import pytest

from esb.errors import NotConfirmed
from esb.inbound.auth import sign
from esb.inbound.http import Endpoint, WebhookApp
from esb.routes.model import HttpAuth, HttpSource, Route, Source
from esb.runtime.broker import Confirmation

SECRET = "s3cret-for-tests-only"


class StandInBroker:
    """Confirms (or refuses, or never answers) each publish and keeps what it confirmed."""

    def __init__(self, outcome="confirm"):
        self.outcome = outcome
        self.published = []

    def publish(self, exchange, routing_key, message):
        confirmation = Confirmation()
        if self.outcome == "confirm":
            self.published.append((exchange, routing_key, message))
            confirmation.set_result(None)
        elif self.outcome == "refuse":
            confirmation.set_exception(NotConfirmed("the broker refused the message (nack)"))
        return confirmation


def route(kind="hmac", max_body=1024, **http) -> Route:
    auth = HttpAuth(kind=kind, secret_env="HOOK_SECRET", secret=SECRET,
                    header={"hmac": "X-Signature", "api_key": "X-Api-Key", "bearer": "Authorization"}[kind])
    source = Source(queue="hooks-q", http=HttpSource(path="/hooks/oa/expense", auth=auth, **http))
    return Route(name="hook", source=source, steps=(), max_body_bytes=max_body)


def app(broker, *routes, timeout=5.0) -> WebhookApp:
    return WebhookApp([Endpoint.of(r, 10_000) for r in routes or (route(),)], broker, timeout)


def call(app: WebhookApp, body=b'{"claim_id": "EXP-1"}', headers=None, path="/hooks/oa/expense", method="POST",
         client="10.0.0.1", length=True):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "REMOTE_ADDR": client,
               "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(body)}
    if length:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    answered = {}
    payload = b"".join(app(environ, lambda status, headers: answered.update(status=status, headers=dict(headers))))
    return int(answered["status"].split()[0]), json.loads(payload), answered["headers"]


def signed(body=b'{"claim_id": "EXP-1"}', at=None, **extra):
    import time
    stamp = str(int(time.time() if at is None else at))
    return {"X-Timestamp": stamp, "X-Signature": "sha256=" + sign(SECRET, stamp, body), **extra}


def test_a_signed_request_is_published_to_the_route_queue_and_answered_202_with_its_message_id():
    broker = StandInBroker()
    status, body, _ = call(app(broker), headers=signed(**{"Idempotency-Key": "oa-775", "X-Request-Id": "r1"}))
    assert status == 202 and body == {"message_id": "oa-775"}
    (exchange, queue, message), = broker.published
    assert (exchange, queue, message.body, message.content_type) == ("", "hooks-q", b'{"claim_id": "EXP-1"}',
                                                                     "application/json")
    assert dict(message.headers) == {"Idempotency-Key": "oa-775", "X-Request-Id": "r1"}


def test_only_allowlisted_headers_reach_the_message_and_never_esb_ones():
    broker = StandInBroker()
    headers = signed(**{"X-Esb-Attempt": "7", "X-Esb-Seal": "forged", "X-OA-Event": "approved", "Cookie": "a=b"})
    status, _, _ = call(app(broker, route(headers=("X-OA-Event",))), headers=headers)
    assert status == 202
    assert dict(broker.published[0][2].headers) == {"X-OA-Event": "approved"}


def test_a_request_the_broker_does_not_confirm_is_answered_503_and_may_be_sent_again_as_it_was():
    headers = signed()
    webhook = app(StandInBroker("refuse"))
    status, body, answer = call(webhook, headers=headers)
    assert status == 503 and "nack" in body["error"] and answer["Retry-After"] == "5"
    webhook.broker = StandInBroker()
    assert call(webhook, headers=headers)[0] == 202  # the signature was released, not burnt


def test_a_broker_that_never_confirms_is_answered_503_after_the_timeout():
    status, body, _ = call(app(StandInBroker("silent"), timeout=0.05), headers=signed())
    assert status == 503 and "no confirm from the broker within 0.05s" in body["error"]


def test_a_body_over_the_limit_is_answered_413_before_it_is_read():
    broker = StandInBroker()
    webhook = app(broker, route(max_body=16))
    status, body, _ = call(webhook, body=b"x" * 17, headers=signed(b"x" * 17))
    assert status == 413 and "over the route's limit of 16" in body["error"]
    status, _, _ = call(webhook, body=b"x" * 17, headers=signed(b"x" * 17), length=False)  # chunked: bounded read
    assert status == 413 and broker.published == []


def test_a_wrong_signature_is_answered_401():
    headers = signed()
    headers["X-Signature"] = "sha256=" + "0" * 64
    status, body, _ = call(app(StandInBroker()), headers=headers)
    assert status == 401 and body == {"error": "the signature does not match the body"}


def test_a_signature_over_another_body_is_answered_401():
    status, _, _ = call(app(StandInBroker()), body=b'{"claim_id": "EXP-2"}', headers=signed(b'{"claim_id": "EXP-1"}'))
    assert status == 401


def test_a_stale_timestamp_is_answered_401_even_when_correctly_signed():
    import time
    status, body, _ = call(app(StandInBroker()), headers=signed(at=time.time() - 301))
    assert status == 401 and "more than 300s from now" in body["error"]


def test_a_replay_of_an_accepted_signed_request_is_refused_and_not_published_again():
    broker = StandInBroker()
    webhook, headers = app(broker), signed()
    assert call(webhook, headers=headers)[0] == 202
    status, body, _ = call(webhook, headers=headers)
    assert status == 401 and "replay" in body["error"] and len(broker.published) == 1


def test_a_request_without_a_signature_is_answered_401():
    assert call(app(StandInBroker()))[0] == 401


@pytest.mark.parametrize("given, status", [("Bearer s3cret-for-tests-only", 202), ("Bearer wrong", 401),
                                            ("Basic s3cret-for-tests-only", 401), (None, 401)])
def test_a_bearer_route_takes_its_token_only(given, status):
    headers = {} if given is None else {"Authorization": given}
    answer = call(app(StandInBroker(), route("bearer")), headers=headers)
    assert answer[0] == status
    if status == 401:
        assert answer[2]["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("given, status", [(SECRET, 202), (SECRET + "x", 401), (None, 401)])
def test_an_api_key_route_takes_its_key_only(given, status):
    headers = {} if given is None else {"X-Api-Key": given}
    assert call(app(StandInBroker(), route("api_key")), headers=headers)[0] == status


def test_the_same_idempotency_header_twice_is_one_message_id():
    broker = StandInBroker()
    webhook = app(broker, route("bearer"))
    for _ in range(2):
        call(webhook, headers={"Authorization": f"Bearer {SECRET}", "Idempotency-Key": "oa-1"})
    assert [m.message_id for _, _, m in broker.published] == ["oa-1", "oa-1"]


def test_an_unprintable_idempotency_header_is_answered_400():
    status, body, _ = call(app(StandInBroker(), route("bearer")),
                           headers={"Authorization": f"Bearer {SECRET}", "Idempotency-Key": "a b"})
    assert status == 400 and "Idempotency-Key" in body["error"]


def test_a_client_over_its_rate_is_answered_429_with_retry_after_and_others_are_not():
    webhook = app(StandInBroker(), route("bearer", rate=0.5, burst=2))
    auth = {"Authorization": f"Bearer {SECRET}"}
    assert [call(webhook, headers=auth)[0] for _ in range(2)] == [202, 202]
    status, _, headers = call(webhook, headers=auth)
    assert status == 429 and headers["Retry-After"] == "2"
    assert call(webhook, headers=auth, client="10.0.0.2")[0] == 202


def test_unknown_paths_and_other_methods_are_refused():
    webhook = app(StandInBroker())
    assert call(webhook, path="/nope")[0] == 404
    status, _, headers = call(webhook, method="GET")
    assert status == 405 and headers["Allow"] == "POST"
