"""Load config/esb.yaml, apply ESB_* environment overrides, fill ${VAR}s."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esb.errors import ConfigError, ConfigErrors
from esb.loading.interpolate import interpolate, unrepeated
from esb.loading.schemacheck import check
from esb.loading.sizes import SIZE, size_bytes
from esb.loading.yamlsource import load_yaml, parse_yaml

CONFIG_FILE = "config/esb.yaml"
# camt.053 statements of a busy account run to several MB; 10 MB takes them whole, while one
# message can cost at most ~50 MB of memory in a worker (a parsed JSON body is ~5x its bytes).
DEFAULT_MAX_BODY = 10 * 1024 ** 2

SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "broker": {"type": "object", "additionalProperties": False,
                   "properties": {"url": {"type": "string", "description": "the broker; a RabbitMQ cluster as its "
                                          "nodes' amqp:// URLs joined by commas (esb connects to one node, and to "
                                          "the next when it cannot or loses it)",
                                          "examples": ["amqp://guest:guest@127.0.0.1:5672/%2F", "memory://",
                                                       "amqp://esb:PW@rabbit1:5672/fin,amqp://esb:PW@rabbit2:5672/fin"]},
                                  "heartbeat": {"type": "integer", "minimum": 0},
                                  "queues": {"enum": ["auto", "quorum", "classic"], "description":
                                             "the type of the routes' queues, retry tiers and dead-letter queues "
                                             "(a route's source.quorum overrides it): auto = quorum when broker.url "
                                             "lists several nodes, else classic"}}},
        "store": {"type": "object", "additionalProperties": False,
                  "properties": {"kind": {"enum": ["sqlite", "redis", "postgres"]}, "path": {"type": "string"},
                                 "url": {"type": "string", "examples": ["redis://127.0.0.1:6379/0",
                                                                       "postgresql://esb@db.internal:5432/esb"]}}},
        "logging": {"type": "object", "additionalProperties": False,
                    "properties": {"level": {"enum": ["debug", "info", "warning", "error"]},
                                   "format": {"enum": ["console", "json"]}}},
        "workers": {"type": "integer", "minimum": 0, "description": "worker processes; 0 = one per core"},
        "cpu": {"type": "object", "additionalProperties": False,
                "properties": {"affinity": {"type": "string", "pattern": r"^(off|auto|\d+(,\d+)*)$", "default": "off",
                                            "description": "pin each worker process to one core: off; auto (worker "
                                            "i on the i-th core it may use, round robin); or the cores to use "
                                            "(\"0,2\"). Halves the CPU per message of routes with many threads; "
                                            "only where esb owns the cores", "examples": ["auto", "0,1"]}}},
        "delivery": {"type": "object", "additionalProperties": False,
                     "properties": {"limit": {"type": "integer", "minimum": 1, "description":
                                              "deliveries of one message before it is dead-lettered unsettled"}}},
        "security": {"type": "object", "additionalProperties": False,
                     "properties": {"state_key": {"type": "string", "minLength": 16, "description":
                                                  "the key that seals esb's retry state and dead letters"}}},
        "metrics": {"type": "object", "additionalProperties": False,
                    "properties": {"listen": {"type": "string", "pattern": r"^(off|[^\s:]*:\d{1,5})$",
                                              "description": "host:port where `esb run` serves /metrics, /healthz "
                                                             "and /readyz (port 0: any free port), or off",
                                              "examples": ["127.0.0.1:9464", "0.0.0.0:9464", "off"]}}},
        "http": {"type": "object", "additionalProperties": False,
                 "dependentRequired": {"tls_cert": ["tls_key"], "tls_key": ["tls_cert"]},
                 "description": "where `esb run` serves the routes with `source: {http: ...}` "
                                "(webhooks); with --workers N the supervisor serves them",
                 "properties": {"listen": {"type": "string", "pattern": r"^[^\s:]*:\d{1,5}$",
                                           "description": "host:port of the webhook server (port 0: any free port)",
                                           "examples": ["127.0.0.1:8080", "0.0.0.0:8443"]},
                                "tls_cert": {"type": "string", "default": "unset",
                                             "description": "a PEM certificate (chain): serve HTTPS; relative to "
                                                            "the project", "examples": ["config/tls/esb.pem"]},
                                "tls_key": {"type": "string", "default": "unset",
                                            "description": "the certificate's PEM private key"},
                                "threads": {"type": "integer", "minimum": 1, "maximum": 1024, "description":
                                            "requests handled at once (each waits for its broker confirm)"}}},
        "reload": {"type": "object", "additionalProperties": False,
                   "properties": {"watch": {"type": "boolean", "default": True,
                                            "description": "reload when a file of routes/, "
                                            "adapters/, transformers/ or config/ changes (SIGHUP and `esb reload` "
                                            "reload whatever this says)"},
                                  "every": {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$",
                                            "default": "1s", "description": "how often the files are compared",
                                            "examples": ["1s", "500ms"]}}},
        "tracing": {"type": "object", "additionalProperties": False, "properties": {
            "exporter": {"enum": ["none", "console", "otlp"], "description": "where `esb run` sends OpenTelemetry "
                         "spans (needs `pip install esb[tracing]`): none, console (stdout) or otlp (OTLP/HTTP)"},
            "endpoint": {"type": "string", "description": "the OTLP/HTTP traces URL; empty: the OTEL_EXPORTER_OTLP_* "
                         "variables, else http://localhost:4318/v1/traces",
                         "examples": ["http://127.0.0.1:4318/v1/traces"]},
            "service_name": {"type": "string", "minLength": 1, "description": "service.name of esb's spans"}}},
        "audit": {"type": "object", "additionalProperties": False,
                  "properties": {"path": {"type": "string", "description": "the audit log of operator actions "
                                          "(replay, purge, reload): JSON lines, appended; relative to the project",
                                          "examples": ["var/audit.jsonl", "/var/log/esb/audit.jsonl"]}}},
        "dlq": {"type": "object", "additionalProperties": False,
                "properties": {"ledger": {"type": "string", "description": "the SQLite file remembering which dead "
                                          "letters were replayed, so none is replayed twice by accident",
                                          "examples": ["var/dlq-replays.sqlite3"]}}},
        "limits": {"type": "object", "additionalProperties": False,
                   "properties": {"max_body": {**SIZE, "description": "the largest body a route takes unless it "
                                               "says max_body; a larger one is dead-lettered unread. Write a size "
                                               "like 512KB, 10MB or 1GB, or whole bytes"}}},
    },
}


@dataclasses.dataclass(frozen=True)
class Settings:
    broker_url: str = ""  # unset: commands that need a broker refuse (esb.cli.brokers)
    heartbeat: int = 30
    broker_queues: str = "auto"  # quorum | classic | auto: quorum when broker_url lists several nodes
    store_kind: str = "sqlite"
    store_path: str = "var/idempotency.sqlite3"
    store_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = "info"
    log_format: str = "console"
    workers: int = 0
    cpu_affinity: str = "off"  # off | auto | "0,2": see esb.runtime.affinity
    delivery_limit: int = 3
    state_key: str | None = None  # None: a key of this machine, kept in var/state.key
    max_body_bytes: int = DEFAULT_MAX_BODY
    reload_every: float = 1.0  # seconds between looks at the files; 0: only SIGHUP / `esb reload`
    metrics_listen: str = "127.0.0.1:9464"  # Prometheus' registered port for exporters of this kind; "off"
    tracing_exporter: str = "none"  # none, console, otlp: see esb.observability.tracing
    tracing_endpoint: str = ""
    tracing_service_name: str = "esb"
    audit_path: str = "var/audit.jsonl"
    replay_ledger: str = "var/dlq-replays.sqlite3"
    http_listen: str = "127.0.0.1:8080"  # webhooks (esb.inbound)
    http_tls_cert: str = ""  # both set: HTTPS
    http_tls_key: str = ""
    http_threads: int = 32


def load_settings(root: Path, env: Mapping[str, str]) -> Settings:
    """Settings from config/esb.yaml (if present), then ESB_SECTION_KEY overrides from `env`."""
    path = root / CONFIG_FILE
    located = load_yaml(path, CONFIG_FILE) if path.is_file() else parse_yaml("{}", CONFIG_FILE)
    data, _, errors = interpolate(located, env)
    data = _overrides(data or {}, env)
    errors += unrepeated(errors, check(located, SCHEMA, data))
    if errors:
        raise ConfigErrors(errors)
    return _settings(data)


def _overrides(data: dict, env: Mapping[str, str]) -> dict:
    """ESB_BROKER_URL=... sets broker.url; ESB_WORKERS=2 sets workers."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for name, value in env.items():
        if not name.startswith("ESB_"):
            continue
        parts = name[4:].lower().split("_", 1)
        section = SCHEMA["properties"].get(parts[0])
        if section is None:
            continue
        if len(parts) == 2 and parts[1] in section.get("properties", {}):
            merged.setdefault(parts[0], {})[parts[1]] = _typed(value, section["properties"][parts[1]])
        elif len(parts) == 1 and section.get("type") == "integer":
            merged[parts[0]] = _typed(value, section)
    return merged


def setting_variables() -> dict[str, str]:
    """Every ESB_* variable that sets a setting, and the setting: {"ESB_BROKER_URL": "broker.url"}."""
    found = {}
    for section, spec in SCHEMA["properties"].items():
        if "properties" in spec:
            found.update({f"ESB_{section}_{key}".upper(): f"{section}.{key}" for key in spec["properties"]})
        else:
            found[f"ESB_{section}".upper()] = section
    return found


OTHER_VARIABLES = ("ESB_ENV_FILE",)  # read by the CLI itself
INTERNAL_VARIABLES = ("ESB_WORKER_INDEX",)  # set by the supervisor for its workers, not by users


def unknown_variables(root: Path, env: Mapping[str, str]) -> list[ConfigError]:
    """ESB_* variables that set nothing (a typo such as ESB_BROKER_URI would be ignored silently),
    except those the project's config names itself (${ESB_...})."""
    from esb.loading.registry import did_you_mean
    known = [*setting_variables(), *OTHER_VARIABLES, *INTERNAL_VARIABLES]
    path = root / CONFIG_FILE
    named = set(re.findall(r"\$\{(ESB_[A-Z0-9_]+)", path.read_text(errors="replace"))) if path.is_file() else set()
    return [ConfigError(f"the environment variable {name} is not a setting esb knows, so it is ignored",
                        hint=did_you_mean(name, known))
            for name in sorted(env) if name.startswith("ESB_") and name not in known and name not in named]


def _typed(value: str, schema: dict) -> Any:
    if schema.get("type") == "boolean" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return int(value) if schema.get("type") == "integer" and value.isdigit() else value


def _settings(data: dict) -> Settings:
    broker, store, logging = data.get("broker", {}), data.get("store", {}), data.get("logging", {})
    base = Settings()
    max_body = data.get("limits", {}).get("max_body")
    return Settings(
        max_body_bytes=base.max_body_bytes if max_body is None else size_bytes(max_body),
        broker_url=broker.get("url", base.broker_url), heartbeat=broker.get("heartbeat", base.heartbeat),
        broker_queues=broker.get("queues", base.broker_queues),
        store_kind=store.get("kind", base.store_kind), store_path=store.get("path", base.store_path),
        store_url=store.get("url", base.store_url), log_level=logging.get("level", base.log_level),
        log_format=logging.get("format", base.log_format), workers=data.get("workers", base.workers),
        cpu_affinity=data.get("cpu", {}).get("affinity", base.cpu_affinity),
        delivery_limit=data.get("delivery", {}).get("limit", base.delivery_limit),
        state_key=data.get("security", {}).get("state_key") or None,
        metrics_listen=data.get("metrics", {}).get("listen", base.metrics_listen),
        reload_every=_reload_every(data.get("reload", {}), base.reload_every),
        **{f"tracing_{k}": v for k, v in data.get("tracing", {}).items()},
        audit_path=data.get("audit", {}).get("path", base.audit_path),
        replay_ledger=data.get("dlq", {}).get("ledger", base.replay_ledger),
        **{f"http_{k}": v for k, v in data.get("http", {}).items()})


def _reload_every(reload: dict, default: float) -> float:
    from esb.loading.durations import seconds
    if reload.get("watch") is False:
        return 0.0
    return seconds(reload["every"]) if "every" in reload else default
