"""The limit: the leanest JSON→XML relay one would write by hand with pika, to see how far esb is from it.

The same process shape as bench/relay.py (one process, one thread, SelectConnection, prefetch 500,
pipelined publisher confirms, ack on confirm: it reuses that class), with the cheapest transform
in Python: orjson parses, lxml's etree.Element/SubElement builds the same XML shape as esb's
`json_to_xml: {root: Voucher}` (objects as elements, lists as repeated elements, same declaration).

This is the lean limit, not a finance-safe relay: orjson reads amounts as binary floats (1680.00
comes out as 1680.0, and a float cannot hold every decimal amount), where esb keeps Decimal.

    python -m bench.leanrelay --url URL --queue Q --exchange "" --routing-key SINK --prefetch 500
"""

from __future__ import annotations

import argparse

import orjson
import pika
from lxml import etree

from bench.relay import Relay

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _fill(element, value) -> None:
    """A dict's keys become children (a list: one child per item, same name); anything else is text."""
    if isinstance(value, dict):
        for key, item in value.items():
            for one in item if isinstance(item, list) else (item,):
                _fill(etree.SubElement(element, key), one)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


def to_xml(body: bytes, root: str) -> bytes:
    element = etree.Element(root)
    _fill(element, orjson.loads(body))
    return DECLARATION + etree.tostring(element, encoding="UTF-8", xml_declaration=False)


class LeanRelay(Relay):
    def _on_message(self, channel, method, properties, body) -> None:
        channel.basic_publish(self.exchange, self.routing_key, to_xml(body, self.root), pika.BasicProperties(
            delivery_mode=2, content_type="application/xml", headers=properties.headers,
            message_id=properties.message_id), mandatory=True)
        self.seq += 1
        self.pending.append((self.seq, method.delivery_tag))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--exchange", default="", help='"" (the default): the routing key names the sink queue')
    parser.add_argument("--routing-key", required=True)
    parser.add_argument("--prefetch", type=int, default=500)
    parser.add_argument("--root", default="Voucher")
    args = parser.parse_args()
    LeanRelay(args.url, args.queue, args.exchange, args.routing_key, args.prefetch, args.root).run()


if __name__ == "__main__":
    main()
