"""Route tests kept beside the routes (routes/tests/*.yaml): an input, mocked `to` steps, expected outcomes.

A case runs the route's steps in process with a RecordingIO: `to` steps get their canned
mock response (or error), publishes are recorded instead of sent. No broker is involved.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from esb.errors import (
    BusinessError,
    ConfigError,
    ConfigErrors,
    PermanentError,
    ProcessingError,
    TransformError,
    TransientError,
    ValidationError,
)
from esb.loading.config import DEFAULT_MAX_BODY
from esb.loading.project import Project
from esb.loading.registry import did_you_mean
from esb.loading.schemacheck import check
from esb.loading.yamlsource import Located, load_yaml
from esb.message import JSON, TEXT, XML, Message
from esb.routes.model import Route, body_too_large
from esb.steps.base import Step
from esb.steps.pipeline import StepFailed, run_steps
from esb.transform import jsoncodec, safexml

TESTS_FOLDER = "routes/tests"
ERROR_CLASSES = {cls.error_class: cls for cls in
                 (TransientError, PermanentError, ValidationError, TransformError, BusinessError)}
MAX_DIFFERENCES = 5  # per comparison; a wholly wrong body would otherwise bury the other reasons


class _Missing:
    """Marks an expectation that was not given (`body: null` is one that was)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()

_TEXT = {"type": "string"}
_MESSAGE_CHECKS = {
    "body": {"description": "the whole body, compared exactly (numbers as Decimal)"},
    "body_contains": {"description": "part of the body: every key given must match, recursively"},
    "headers": {"type": "object", "description": "headers that must be present with these values"},
}


def _sent(fields: dict, required: list[str]) -> dict:
    return {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": required,
                                       "properties": {**fields, **_MESSAGE_CHECKS}}}


SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["route", "cases"],
    "properties": {
        "route": {"type": "string", "description": "the name of the route under test"},
        "description": _TEXT,
        "cases": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "input"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "description": _TEXT,
                "input": {"type": "object", "additionalProperties": False, "properties": {
                    "body": {"description": "a JSON body"}, "xml": {**_TEXT, "description": "an XML body"},
                    "file": {**_TEXT, "description": "a file relative to the project root (.xml, .json, else text)"},
                    "fire_time": {**_TEXT, "examples": ["2026-12-07T08:00:00+08:00"],
                                  "description": "a scheduled route: the trigger message of this fire time"},
                    "headers": {"type": "object"}}},
                "mocks": {"type": "object", "description": "canned answers of `to` steps, by label",
                          "additionalProperties": {"type": "object", "additionalProperties": False, "properties": {
                              "body": {}, "xml": _TEXT, "error": {"enum": sorted(ERROR_CLASSES)}, "message": _TEXT,
                              "passthrough": {"const": True,
                                              "description": "answer with the request unchanged"}}}},
                "expect": {"type": "object", "additionalProperties": False, "properties": {
                    **_MESSAGE_CHECKS,
                    "xpath": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                    "xsd": {**_TEXT, "description": "an XSD file (relative to the project root) the body must match"},
                    "published": _sent({"exchange": _TEXT, "routing_key": _TEXT}, ["exchange"]),
                    "calls": _sent({"step": _TEXT}, ["step"]),
                    "error": {"type": "object", "additionalProperties": False, "properties": {
                        "class": {"enum": sorted(ERROR_CLASSES)}, "step": _TEXT, "message_contains": _TEXT}},
                    "dropped": {"type": "boolean"}}},
            }}},
    },
}


# --- the model -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mock:
    """The canned answer of one `to` step: a response message, or an error to raise."""

    response: Message | None = None
    error_class: str | None = None
    error_message: str = "mocked failure"

    def answer(self, request: Message) -> Message:
        if self.error_class is not None:
            raise ERROR_CLASSES[self.error_class](self.error_message)
        if self.response is None:  # passthrough
            return request
        return dataclasses.replace(self.response, headers=request.headers, message_id=request.message_id)


@dataclasses.dataclass(frozen=True)
class MessageCheck:
    """What one message must look like; `fields` are further attributes of a recorded send."""

    fields: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: Any = MISSING
    body_contains: Any = MISSING
    headers: Mapping[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return self.body is MISSING and self.body_contains is MISSING and self.headers is None


@dataclasses.dataclass(frozen=True)
class ExpectedError:
    error_class: str | None = None
    step: str | None = None
    message_contains: str | None = None


@dataclasses.dataclass(frozen=True)
class Expect:
    output: MessageCheck = MessageCheck()
    xpath: tuple[tuple[str, str], ...] = ()
    xsd: Path | None = None
    published: tuple[MessageCheck, ...] | None = None
    calls: tuple[MessageCheck, ...] | None = None
    error: ExpectedError | None = None
    dropped: bool | None = None

    @property
    def checks_output(self) -> bool:
        return not self.output.empty or bool(self.xpath) or self.xsd is not None


@dataclasses.dataclass(frozen=True)
class Case:
    route: str
    name: str
    message: Message
    mocks: Mapping[str, Mock]
    expect: Expect
    where: str


@dataclasses.dataclass(frozen=True)
class CaseResult:
    route: str
    case: str
    passed: bool
    reasons: list[str]
    where: str  # file:line of the case


# --- recording the outside world ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Call:
    step: str
    adapter: str
    operation: str
    message: Message


@dataclasses.dataclass(frozen=True)
class Publish:
    step: str
    exchange: str
    routing_key: str
    message: Message


class MissingMock(Exception):
    """A `to` step was reached that the case gives no mock for."""


class RecordingIO:
    """StepIO for route tests: answers `to` steps from mocks and records every call and publish."""

    def __init__(self, mocks: Mapping[str, Mock]):
        self.mocks = mocks
        self.calls: list[Call] = []
        self.published: list[Publish] = []
        self.missing: list[Call] = []

    def call(self, step: Step, adapter: str, operation: str, message: Message) -> Message:
        call = Call(step.label, adapter, operation, message)
        mock = self.mocks.get(step.label)
        if mock is None:
            self.missing.append(call)
            raise MissingMock(f"no mock for the step '{step.label}'")
        self.calls.append(call)
        return mock.answer(message)

    def publish(self, step: Step, exchange: str, routing_key: str, message: Message) -> None:
        self.published.append(Publish(step.label, exchange, routing_key, message))

    def completed(self, step: Step, message: Message) -> None:
        """Compensation records are the runtime's business; route tests need none."""


# --- loading -----------------------------------------------------------------------------------------


def case_files(root: Path) -> list[Path]:
    folder = root / TESTS_FOLDER
    return sorted(p for pattern in ("*.yaml", "*.yml") for p in folder.glob(pattern))


@dataclasses.dataclass(frozen=True)
class CaseFile:
    """The cases of one routes/tests file, or the problems that keep it from loading."""

    path: str
    route: str | None
    cases: tuple[Case, ...]
    errors: tuple[ConfigError, ...]


def load_case_files(project: Project) -> list[CaseFile]:
    """Each file of routes/tests/ on its own: a broken file does not hide the cases of the others."""
    found = []
    for path in case_files(project.root):
        shown = str(path.relative_to(project.root))
        errors: list[ConfigError] = []
        try:
            located = load_yaml(path, shown)
        except ConfigErrors as exc:
            found.append(CaseFile(shown, None, (), tuple(exc.errors)))
            continue
        cases = _load_file(located, project, errors)
        route = located.data.get("route") if isinstance(located.data, dict) else None
        found.append(CaseFile(shown, route if isinstance(route, str) else None, tuple(cases), tuple(errors)))
    return found


def load_route_tests(project: Project) -> list[Case]:
    """Every case of routes/tests/*.yaml; raise ConfigErrors listing every problem in every file."""
    files = load_case_files(project)
    errors = [e for f in files for e in f.errors]
    if errors:
        raise ConfigErrors(errors)
    return [case for f in files for case in f.cases]


def _load_file(located: Located, project: Project, errors: list[ConfigError]) -> list[Case]:
    problems = check(located, SCHEMA, located.data)
    if problems:
        errors += problems
        return []
    data = located.data
    route = project.routes.get(data["route"])
    if route is None:
        errors.append(located.error(("route",), f"no route is named '{data['route']}'",
                                    did_you_mean(data["route"], sorted(project.routes))))
        return []
    loader = _CaseLoader(located, route, project.root, errors)
    return [case for i, config in enumerate(data["cases"]) if (case := loader.case(config, ("cases", i)))]


@dataclasses.dataclass
class _CaseLoader:
    """Builds the cases of one file, noting each problem with its line."""

    located: Located
    route: Route
    root: Path
    errors: list[ConfigError]
    names: set = dataclasses.field(default_factory=set)

    def error(self, at: tuple, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.errors.append(self.located.error(at, message, hint, key=key))

    def case(self, config: dict, at: tuple) -> Case | None:
        before = len(self.errors)
        if config["name"] in self.names:
            self.error(at + ("name",), f"two cases are named '{config['name']}'", "give each case its own name")
        self.names.add(config["name"])
        message = self.input(config["input"], at + ("input",))
        mocks = {label: self.mock(label, mock, at + ("mocks", label))
                 for label, mock in config.get("mocks", {}).items()}
        expect = self.expect(config.get("expect", {}), at + ("expect",))
        if len(self.errors) > before:
            return None
        line = self.located.where(at)[0]
        return Case(self.route.name, config["name"], message, mocks, expect, f"{self.located.path}:{line}")

    def input(self, config: dict, at: tuple) -> Message | None:
        given = [k for k in ("body", "xml", "file", "fire_time") if k in config]
        if len(given) != 1:
            self.error(at, "the input needs exactly one of `body`, `xml`, `file` or `fire_time`",
                       f"found: {', '.join(given) or 'none'}", key=True)
            return None
        headers = config.get("headers", {})
        if "fire_time" in config:
            return self.fire_time_input(str(config["fire_time"]), headers, at + ("fire_time",))
        if "body" in config:
            return Message(config["body"], JSON, headers)
        if "xml" in config:
            return Message(config["xml"], XML, headers)
        return self.file_input(config["file"], headers, at + ("file",))

    def fire_time_input(self, text: str, headers: dict, at: tuple) -> Message | None:
        """The trigger message the scheduler publishes for this fire time (esb.runtime.schedule)."""
        from datetime import datetime
        from zoneinfo import ZoneInfo

        from esb.runtime.schedule import message_id, trigger_body
        schedule = self.route.source.schedule
        if schedule is None:
            self.error(at, f"the route '{self.route.name}' has no schedule, so a fire time cannot feed it",
                       "give `body`, `xml` or `file` instead", key=True)
            return None
        try:
            fire_time = datetime.fromisoformat(text)
            fire_time = fire_time.astimezone(ZoneInfo(schedule.timezone)) if fire_time.tzinfo else fire_time
        except ValueError:
            fire_time = None
        if fire_time is None or fire_time.tzinfo is None:
            self.error(at, f"'{text}' is not a fire time with its offset", "write e.g. 2026-12-07T08:00:00+08:00")
            return None
        return Message(trigger_body(self.route.name, schedule, fire_time), JSON, headers,
                       message_id=message_id(self.route.name, fire_time))

    def file_input(self, name: str, headers: dict, at: tuple) -> Message | None:
        path = self.file(name, at)
        if path is None:
            return None
        if path.suffix.lower() == ".xml":
            return Message(path.read_text(encoding="utf-8"), XML, headers)
        if path.suffix.lower() != ".json":
            return Message(path.read_bytes(), TEXT, headers)
        try:
            return Message(jsoncodec.loads(path.read_bytes()), JSON, headers)
        except TransformError as exc:
            self.error(at, f"the file '{name}' is not valid JSON: {exc}")
            return None

    def file(self, name: str, at: tuple) -> Path | None:
        path = (self.root / name).resolve()
        if not path.is_file():
            self.error(at, f"the file '{name}' does not exist", "check the path (relative to the project root)")
            return None
        return path

    def mock(self, label: str, config: dict, at: tuple) -> Mock | None:
        self.known_step(label, at, key=True, kind="to")
        given = [k for k in ("body", "xml", "error", "passthrough") if k in config]
        if len(given) != 1:
            self.error(at, f"the mock '{label}' needs exactly one of `body`, `xml`, `error` or `passthrough`",
                       f"found: {', '.join(given) or 'none'}", key=True)
            return None
        if "error" in config:
            return Mock(error_class=config["error"], error_message=config.get("message", "mocked failure"))
        if "passthrough" in config:
            return Mock()
        response = Message(config["body"], JSON) if "body" in config else Message(config["xml"], XML)
        return Mock(response=response)

    def known_step(self, label: str, at: tuple, *, key: bool = False, kind: str | None = None) -> None:
        """Note a label that names no step of the route (or no step of `kind`)."""
        steps = {s.label: s for s in self.route.walk()}
        wanted = sorted(lbl for lbl, s in steps.items() if kind in (None, s.kind))
        if label in wanted:
            return
        if label in steps:
            self.error(at, f"the step '{label}' is a `{steps[label].kind}` step; only `{kind}` steps fit here",
                       "name the label of a `to` step", key=key)
            return
        what = f"`{kind}` step" if kind else "step"
        self.error(at, f"the route '{self.route.name}' has no {what} labelled '{label}'",
                   did_you_mean(label, wanted) or f"the route has no `{kind}` steps", key=key)

    def expect(self, config: dict, at: tuple) -> Expect:
        error = config.get("error")
        if error and "step" in error:
            self.known_step(error["step"], at + ("error", "step"))
        for i, call in enumerate(config.get("calls", [])):
            self.known_step(call["step"], at + ("calls", i, "step"), kind="to")
        return Expect(
            output=_message_check(config, ()),
            xpath=tuple((expr, _text(value)) for expr, value in config.get("xpath", {}).items()),
            xsd=self.file(config["xsd"], at + ("xsd",)) if "xsd" in config else None,
            published=_checks(config.get("published"), ("exchange", "routing_key")),
            calls=_checks(config.get("calls"), ("step",)),
            error=ExpectedError(error.get("class"), error.get("step"), error.get("message_contains"))
            if error is not None else None,
            dropped=config.get("dropped"))


def _message_check(config: dict, fields: tuple[str, ...]) -> MessageCheck:
    return MessageCheck({f: config[f] for f in fields if f in config}, config.get("body", MISSING),
                        config.get("body_contains", MISSING), config.get("headers"))


def _checks(configs: list | None, fields: tuple[str, ...]) -> tuple[MessageCheck, ...] | None:
    return None if configs is None else tuple(_message_check(c, fields) for c in configs)


# --- running -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    message: Message | None
    failure: StepFailed | None
    io: RecordingIO


def run_route_tests(project: Project, route_name: str | None = None) -> list[CaseResult]:
    """Run every case (of one route, when named); a ConfigErrors if the name is wrong.

    A test file that does not load fails as one result of its own, and the other files still run.
    """
    if route_name is not None:
        project.route(route_name)
    results = []
    for file in load_case_files(project):
        if route_name not in (None, file.route) and not (file.errors and file.route is None):
            continue
        if file.errors:
            results.append(CaseResult(file.route or Path(file.path).stem, "(the test file does not load)", False,
                                      [str(e) for e in file.errors], file.path))
            continue
        results += [run_case(project.routes[c.route], c, project.settings.max_body_bytes) for c in file.cases]
    return results


def run_case(route: Route, case: Case, max_body: int = DEFAULT_MAX_BODY) -> CaseResult:
    """Run one case as a worker would: a body over the route's max_body fails before any step."""
    io = RecordingIO(case.mocks)
    too_large = body_too_large(_body_size(case.message), route.body_limit(max_body))
    try:
        if too_large:
            raise StepFailed(PermanentError(too_large), 0, case.message)
        outcome = Outcome(run_steps(route.steps, case.message, io), None, io)
    except StepFailed as failed:
        outcome = Outcome(None, failed, io)
    reasons = check_outcome(outcome, case.expect)
    return CaseResult(case.route, case.name, not reasons, reasons, case.where)


def check_outcome(outcome: Outcome, expect: Expect) -> list[str]:
    """Every way the outcome differs from what the case expects (empty: the case passed)."""
    if outcome.io.missing:
        return [_missing_mock(call) for call in outcome.io.missing]
    reasons = _error_reasons(expect.error, outcome.failure)
    if outcome.failure is not None and expect.error is None:
        return reasons
    reasons += _dropped_reasons(expect, outcome)
    reasons += _output_reasons(expect, outcome.message)
    if expect.published is not None:
        reasons += _sent_reasons("published", expect.published, outcome.io.published)
    if expect.calls is not None:
        reasons += _sent_reasons("calls", expect.calls, outcome.io.calls)
    return reasons


def _missing_mock(call: Call) -> str:
    return (f"the step '{call.step}' calls {call.adapter}.{call.operation} but the case has no mock for it — "
            f"add `mocks: {{{call.step}: {{body: ...}}}}`")


def _body_size(message: Message) -> int:
    """The body's size in bytes as it would travel (a JSON body written compactly)."""
    body = message.body
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    try:
        text = body if isinstance(body, str) else jsoncodec.dumps(body)
    except TransformError:  # a YAML date in a test body: the steps will say what is wrong
        return 0
    return len(text.encode("utf-8", errors="replace"))


def describe(error: ProcessingError) -> str:
    where = f"at step '{error.step}'" if error.step else "before the first step"
    return f"{error.error_class} error {where}: {error.message}"


def _error_reasons(expected: ExpectedError | None, failure: StepFailed | None) -> list[str]:
    if expected is None:
        return [f"the route failed with a {describe(failure.error)}"] if failure else []
    if failure is None:
        return [f"expected a {expected.error_class or 'failure'} error, but the route succeeded"]
    error, reasons = failure.error, []
    if expected.error_class and not _is_class(error, expected.error_class):
        reasons.append(f"error: expected class {expected.error_class}, got a {describe(error)}")
    if expected.step and error.step != expected.step:
        reasons.append(f"error: expected at step '{expected.step}', got a {describe(error)}")
    if expected.message_contains and expected.message_contains not in error.message:
        reasons.append(f"error: expected a message containing {expected.message_contains!r}, got {error.message!r}")
    return reasons


def _is_class(error: ProcessingError, name: str) -> bool:
    """`permanent` matches a validation error too: classes follow the error tree."""
    return any(getattr(cls, "error_class", None) == name for cls in type(error).__mro__)


def _dropped_reasons(expect: Expect, outcome: Outcome) -> list[str]:
    dropped = outcome.message is None and outcome.failure is None
    if expect.dropped and not dropped:
        return ["expected a filter to drop the message, but it went through"]
    if dropped and not expect.dropped:
        return ["a filter dropped the message (write `dropped: true` if that is expected)"]
    return []


def _output_reasons(expect: Expect, message: Message | None) -> list[str]:
    if message is None:
        return ["there is no output message to check body, headers, xpath or xsd against"] \
            if expect.checks_output else []
    reasons = message_differences(expect.output, message, "")
    if expect.xpath:
        reasons += xpath_differences(message, expect.xpath)
    if expect.xsd is not None:
        reasons += xsd_differences(message, expect.xsd)
    return reasons


def _sent_reasons(what: str, expected: tuple[MessageCheck, ...], actual: list) -> list[str]:
    reasons = []
    if len(expected) != len(actual):
        sent = ", ".join(_summary(record) for record in actual) or "none"
        reasons.append(f"{what}: expected {len(expected)}, got {len(actual)} ({sent})")
    for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
        reasons += [f"{what}[{i}].{field}: expected {value!r}, got {getattr(got, field)!r}"
                    for field, value in want.fields.items() if getattr(got, field) != value]
        reasons += message_differences(want, got.message, f"{what}[{i}].")
    return reasons


def _summary(record: Call | Publish) -> str:
    return f"{record.exchange} {record.routing_key}" if isinstance(record, Publish) else record.step


# --- comparing ---------------------------------------------------------------------------------------


def message_differences(want: MessageCheck, message: Message, prefix: str) -> list[str]:
    reasons = []
    if want.body is not MISSING:
        reasons += differences(want.body, _body_value(message), f"{prefix}body")
    if want.body_contains is not MISSING:
        reasons += differences(want.body_contains, message.body, f"{prefix}body", subset=True) if message.is_json \
            else [f"{prefix}body_contains: the body is {message.content_type}, not JSON (use xpath for XML)"]
    if want.headers is not None:
        reasons += differences(dict(want.headers), dict(message.headers), f"{prefix}headers", subset=True)
    return reasons


def _body_value(message: Message) -> Any:
    if isinstance(message.body, (bytes, bytearray)):
        return bytes(message.body).decode("utf-8", errors="replace")
    return message.body


def differences(expected: Any, actual: Any, path: str, *, subset: bool = False) -> list[str]:
    """Where `actual` differs from `expected`; with `subset`, keys not expected are ignored."""
    found = list(_differences(expected, actual, path, subset))
    if len(found) > MAX_DIFFERENCES:
        found = found[:MAX_DIFFERENCES] + [f"{path}: and {len(found) - MAX_DIFFERENCES} more differences"]
    return found


def _differences(expected: Any, actual: Any, path: str, subset: bool):
    if isinstance(expected, dict):
        yield from _dict_differences(expected, actual, path, subset)
    elif isinstance(expected, list):
        yield from _list_differences(expected, actual, path, subset)
    elif isinstance(actual, float):
        yield f"{path}: expected {_show(expected)}, got the float {actual!r} (money must be Decimal)"
    elif not _same_scalar(expected, actual):
        yield f"{path}: expected {_show(expected)}, got {_show(actual)}"


def _dict_differences(expected: dict, actual: Any, path: str, subset: bool):
    if not isinstance(actual, Mapping):
        yield f"{path}: expected a mapping, got {_show(actual)}"
        return
    for key, value in expected.items():
        if key not in actual:
            yield f"{path}.{key}: missing"
        else:
            yield from _differences(value, actual[key], f"{path}.{key}", subset)
    if not subset:
        yield from (f"{path}.{key}: not expected (got {_show(actual[key])})" for key in actual if key not in expected)


def _list_differences(expected: list, actual: Any, path: str, subset: bool):
    if not isinstance(actual, (list, tuple)):
        yield f"{path}: expected a list, got {_show(actual)}"
        return
    if len(expected) != len(actual):
        yield f"{path}: expected {len(expected)} items, got {len(actual)}"
    for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
        yield from _differences(want, got, f"{path}[{i}]", subset)


def _same_scalar(expected: Any, actual: Any) -> bool:
    """Equal values of the same kind: 1 is not True, and numbers compare as exact decimals."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, Decimal)) and isinstance(actual, (int, Decimal)):
        return Decimal(expected) == Decimal(actual)
    return type(expected) is type(actual) and expected == actual


def _show(value: Any) -> str:
    try:
        text = jsoncodec.dumps(value)
    except (TransformError, TypeError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value: Any) -> str:
    """An expected XPath result, as the string it is compared with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def xpath_differences(message: Message, expressions: tuple[tuple[str, str], ...]) -> list[str]:
    root = _xml_root(message)
    if isinstance(root, str):
        return [f"xpath: {root}"]
    namespaces = {prefix: uri for prefix, uri in root.nsmap.items() if prefix}
    if root.nsmap.get(None):
        namespaces["d"] = root.nsmap[None]
    reasons = []
    for expression, expected in expressions:
        try:
            got = xpath_string(root.xpath(expression, namespaces=namespaces))
        except etree.XPathError as exc:
            reasons.append(f"xpath {expression}: cannot be evaluated ({exc})")
            continue
        if got != expected:
            reasons.append(f"xpath {expression}: expected {expected!r}, got {got!r}")
    return reasons


def xpath_string(result: Any) -> str:
    """An XPath result as text: a node-set gives its first node's string value, count() an int."""
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, float):
        if result != result:
            return "NaN"
        return str(int(result)) if result.is_integer() else format(result, ".15g")
    if isinstance(result, list):
        if not result:
            return ""
        first = result[0]
        return "".join(first.itertext()) if hasattr(first, "itertext") else str(first)
    return str(result)


def _xml_root(message: Message):
    """The parsed body's root element, or a sentence saying why there is none."""
    if not message.is_xml:
        return f"the body is {message.content_type}, not XML"
    try:
        return safexml.parse_xml(message.body)
    except ProcessingError as exc:
        return f"the body is not well-formed XML: {exc}"


def xsd_differences(message: Message, path: Path) -> list[str]:
    root = _xml_root(message)
    if isinstance(root, str):
        return [f"xsd: {root}"]
    try:
        safexml.validate_xsd(_xsd(path), root)
    except ProcessingError as exc:
        return [f"xsd {path.name}: {exc}"]
    return []


@functools.lru_cache(maxsize=32)
def _xsd(path: Path):
    return safexml.load_xsd(path)
