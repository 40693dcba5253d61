"""The limit: the leanest JSON→XML relay one would write by hand with pika, to see how far esb is from it.

The same process shape as bench/relay.py (one process, one thread, SelectConnection, prefetch 500,
pipelined publisher confirms, ack on confirm: it is that class with another transform), with the cheapest transform
in Python: orjson parses, lxml's etree.Element/SubElement builds the same XML shape as esb's
`json_to_xml: {root: Voucher}` (objects as elements, lists as repeated elements, same declaration).

This is the lean limit, not a finance-safe relay: orjson reads amounts as binary floats (1680.00
comes out as 1680.0, and a float cannot hold every decimal amount), where esb keeps Decimal.

    python -m bench.leanrelay --url URL --queue Q --exchange "" --routing-key SINK --prefetch 500
"""

from __future__ import annotations

import orjson
from lxml import etree

from bench.relay import Relay, main

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
    def transform(self, body: bytes) -> bytes:
        return to_xml(body, self.root)


if __name__ == "__main__":
    main(LeanRelay, __doc__)
