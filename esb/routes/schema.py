"""The JSON Schema of a route file (steps are checked one by one against their kind's schema)."""

from __future__ import annotations

from esb.adapters.kinds import DURATION
from esb.inbound.spec import HTTP_SOURCE
from esb.loading.sizes import SIZE

NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$", "maxLength": 200}

SCHEDULE = {
    "type": "object", "additionalProperties": False, "required": ["cron"],
    "description": "fire the route on a timetable: one trigger message per fire time (instead of an exchange)",
    "properties": {
        "cron": {"type": "string", "examples": ["0 8 * * 1-5"],
                 "description": "minute hour day-of-month month day-of-week, read in `timezone`"},
        "timezone": {"type": "string", "examples": ["Asia/Shanghai"], "description": "an IANA zone (default UTC)"},
        "calendar": {"enum": ["none", "weekdays", "cn_workdays"],
                     "description": "days it may fire on: every day (none), Monday to Friday, or China's statutory "
                                    "working days (holidays off, make-up Saturdays and Sundays on)"},
        "catch_up": {"type": "boolean", "description": "emit fire times missed while esb was down, late (at most "
                                                       "the last 10); default: skip them and log schedule_missed"},
    },
}

ROUTE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "source", "steps"],
    "properties": {
        "name": {**NAME, "description": "the route's name; also its queue's name unless source.queue says otherwise",
                 "examples": ["oa-expense-to-voucher"]},
        "description": {"type": "string"},
        "source": {
            "type": "object", "additionalProperties": False,
            "description": "the queue the route consumes, and the exchange and key it is bound to",
            "properties": {
                "exchange": {"type": "string", "examples": ["oa.events"]},
                "binding_key": {"type": "string", "examples": ["expense.approved"]},
                "exchange_type": {"enum": ["topic", "direct", "fanout", "headers"]},
                "queue": {**NAME, "description": "defaults to the route name"},
                "quorum": {"type": "boolean", "description": "quorum queues (replicated on a cluster) for this route, "
                           "or classic ones (false); unset: as broker.queues in config/esb.yaml says"},
                "format": {"enum": ["json", "xml", "text", "binary"],
                           "description": "how the body is read when the message says no content type"},
                "http": HTTP_SOURCE,
                "schedule": SCHEDULE,
            },
        },
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 1024,
                        "description": "messages in flight at once (the prefetch): threads for a route with "
                                       "`to` or `function` steps; for a route that cannot block, the depth "
                                       "of its pipeline of publisher confirms"},
        "max_body": {**SIZE, "description": "the largest body this route takes, e.g. 2MB (default: limits.max_body "
                                             "in config/esb.yaml); a larger message is dead-lettered unread, its "
                                             "bytes kept. Write a size like 512KB, 10MB or 1GB, or whole bytes"},
        "idempotency": {
            "type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
            "description": "what makes two messages the same: `key` (JMESPath into the body) or `header`",
            "properties": {"key": {"type": "string", "examples": ["claim_id"]}, "header": {"type": "string"}},
        },
        "ordering": {
            "type": "object", "additionalProperties": False, "required": ["key"],
            "description": "messages with the same key (e.g. a bank account) run one at a time, in the order they "
                           "were published, across workers and machines; different keys run in parallel. A failed "
                           "message is retried in place, holding back the later messages of its key",
            "properties": {
                "key": {"type": "string", "examples": ["account"],
                        "description": "JMESPath into the JSON body (header('name') reads a header)"},
                "partitions": {"type": "integer", "minimum": 1, "maximum": 256,
                               "description": "queues the keys are spread over (default 8): at most this many "
                                              "keys run at once"},
            },
        },
        "retry": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "attempts": {"type": "integer", "minimum": 1, "maximum": 100,
                             "description": "deliveries before the message is dead-lettered"},
                "in_process": {"type": "integer", "minimum": 0, "maximum": 10,
                               "description": "quick retries inside the worker before a delay tier"},
                "backoff": {"type": "object", "additionalProperties": False,
                            "properties": {"initial": DURATION, "max": DURATION,
                                           "multiplier": {"type": "number", "minimum": 1}}},
            },
        },
        "steps": {"type": "array", "minItems": 1, "items": {"type": "object"},
                  "description": "the steps, in order; each is `- KIND: settings` with an optional `label`"},
    },
}

STEP_META_KEYS = ("label", "description")
LABEL = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
