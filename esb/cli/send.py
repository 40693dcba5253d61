"""`esb send`: publish a file (or stdin) to a route or an exchange with publisher confirms; print its message id."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from esb.cli.brokers import broker_option, resolve_broker
from esb.cli.completion import complete_route
from esb.cli.dlq import load_route
from esb.errors import TransformError
from esb.message import JSON, TEXT, XML
from esb.runtime import names
from esb.runtime.broker import confirmed_publish
from esb.runtime.connect import connected
from esb.transform import jsoncodec

CONTENT_TYPES = {".json": JSON, ".xml": XML}
SHORT_TYPES = {"json": JSON, "xml": XML, "text": TEXT}
STDIN = "-"


def _complete_args(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A route name first (unless --exchange is given), then a file name."""
    if ctx.params.get("args") or ctx.params.get("exchange"):
        return [CompletionItem(incomplete, type="file")]
    return complete_route(ctx, param, incomplete)


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[ROUTE] FILE|-", shell_complete=_complete_args)
@click.option("--exchange", help="Publish to this exchange instead of a route's source.")
@click.option("--key", help="Routing key [default: the route's binding key].")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE", help="A message header (repeatable).")
@click.option("--id", "message_id", metavar="MESSAGE_ID", help="The message id [default: a new uuid].")
@click.option("--content-type", metavar="TYPE",
              help="json, xml, text or a MIME type [default: from the file's extension, else from the body].")
@broker_option
@click.pass_obj
def send(root: Path, args: tuple[str, ...], exchange: str | None, key: str | None, headers: tuple[str, ...],
         message_id: str | None, content_type: str | None, broker_url: str | None) -> None:
    """Publish FILE to ROUTE's source, or with --exchange X --key K to an exchange; FILE `-` reads stdin.

    The content type is --content-type, else the file's extension (.json, .xml), else the body's:
    JSON when it parses as JSON, XML when it starts with `<`, else text/plain.
    """
    route, file = _route_and_file(args, exchange, key)
    target = (exchange, key) if route is None else route_target(load_route(root, route), key)
    body = sys.stdin.buffer.read() if file == STDIN else Path(file).read_bytes()
    kind, message_id = content_type_for(file, body, content_type), message_id or uuid.uuid4().hex
    with connected(resolve_broker(root, broker_url)) as broker:
        confirmed_publish(broker)(*target, body, kind, parse_headers(headers), message_id)
    click.echo(message_id)


def _route_and_file(args: tuple[str, ...], exchange: str | None, key: str | None) -> tuple[str | None, str]:
    if len(args) == 2 and exchange is None:
        route, file = args
    elif len(args) == 1 and exchange is not None and key is not None:
        route, file = None, args[0]
    else:
        raise click.UsageError("usage: esb send ROUTE FILE, or esb send --exchange X --key K FILE (FILE - reads stdin)")
    if file != STDIN and not Path(file).is_file():
        raise click.BadParameter(f"no such file: {file}", param_hint="FILE")
    return route, file


def route_target(route, key: str | None = None) -> tuple[str, str]:
    """(exchange, routing key) that reaches the route: its source exchange with its binding key when
    that key names one key, else its queue through the default exchange."""
    source = route.source
    if key is not None and source.exchange:
        return source.exchange, key
    if source.exchange and not any(c in source.binding_key for c in "*#"):
        return source.exchange, source.binding_key
    return "", source.queue or names.route_queue(route.name)


def content_type_for(file: str, body: bytes = b"", given: str | None = None) -> str:
    """--content-type (json, xml, text or a MIME type), else the file's extension, else sniffed from the body."""
    if given:
        return SHORT_TYPES.get(given.lower(), given)
    return CONTENT_TYPES.get(Path(file).suffix.lower()) or sniff(body)


def sniff(body: bytes) -> str:
    """JSON when the body parses as JSON, XML when it starts with `<`, else text. A parse rather than
    a look at the first byte: an MT940 file with SWIFT block headers starts with `{1:`."""
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return XML
    if head[:1] in (b"{", b"["):
        try:
            jsoncodec.loads(body)
        except TransformError:
            return TEXT
        return JSON
    return TEXT


def parse_headers(pairs: tuple[str, ...]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise click.BadParameter(f"'{pair}' is not NAME=VALUE", param_hint="--header")
        headers[name.strip()] = value
    return headers
