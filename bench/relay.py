"""Baseline JSON→XML relay: what one would write by hand with pika, to compare esb against.

One process, one thread, one SelectConnection and one channel: consume with a prefetch, run the
same transform esb's `json_to_xml: {root: Voucher}` step runs (jsoncodec.loads, then
xmljson.json_to_xml on {"Voucher": body}), publish persistent + mandatory in confirm mode, and
ack a source only when its output is confirmed. Confirms are pipelined; since messages are
handled in order, the contiguous confirmed prefix is acked with one multiple-ack.

    python -m bench.relay --url URL --queue Q --exchange X --routing-key K --prefetch 500
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys

import pika

from esb.transform import jsoncodec, xmljson


class Relay:
    def __init__(self, url: str, queue: str, exchange: str, routing_key: str, prefetch: int, root: str):
        self.url, self.queue, self.exchange, self.routing_key = url, queue, exchange, routing_key
        self.prefetch, self.root = prefetch, root
        self.channel = None
        self.seq = 0
        self.pending: collections.deque[tuple[int, int]] = collections.deque()  # (publish seq, delivery tag)
        self.confirmed: set[int] = set()
        self.relayed = 0
        self.connection = pika.SelectConnection(
            pika.URLParameters(url), on_open_callback=self._on_open,
            on_open_error_callback=lambda _c, e: self._fail(f"cannot connect: {e}"),
            on_close_callback=self._on_closed)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.connection.ioloop.add_callback_threadsafe(self._stop))
        self.connection.ioloop.start()

    def _stop(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def _on_closed(self, _connection, reason) -> None:
        print(f"{__name__}: connection closed: {reason}", file=sys.stderr)
        self.connection.ioloop.stop()

    def _fail(self, why: str) -> None:
        print(f"relay: {why}", file=sys.stderr)
        self.connection.ioloop.stop()

    def _on_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel) -> None:
        self.channel = channel
        channel.confirm_delivery(self._on_confirm, callback=lambda _: channel.basic_qos(
            prefetch_count=self.prefetch, callback=lambda _: channel.basic_consume(self.queue, self._on_message)))

    def transform(self, body: bytes) -> bytes:
        document = jsoncodec.loads(body)
        return xmljson.json_to_xml({self.root: document}, root=self.root).encode("utf-8")

    def _on_message(self, channel, method, properties, body) -> None:
        channel.basic_publish(self.exchange, self.routing_key, self.transform(body), pika.BasicProperties(
            delivery_mode=2, content_type="application/xml", headers=properties.headers,
            message_id=properties.message_id), mandatory=True)
        self.seq += 1
        self.pending.append((self.seq, method.delivery_tag))

    def _on_confirm(self, frame) -> None:
        method = frame.method
        if not isinstance(method, pika.spec.Basic.Ack):
            self._fail(f"the broker nacked publish {method.delivery_tag}")
            return
        pending = self.pending
        last_tag = None
        if method.multiple:
            while pending and pending[0][0] <= method.delivery_tag:
                seq, last_tag = pending.popleft()
                self.confirmed.discard(seq)
        else:
            self.confirmed.add(method.delivery_tag)
        while pending and pending[0][0] in self.confirmed:
            self.confirmed.discard(pending[0][0])
            last_tag = pending.popleft()[1]
        if last_tag is not None:
            self.channel.basic_ack(last_tag, multiple=True)


def main(relay: type[Relay] = Relay, description: str = __doc__) -> None:
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--routing-key", default="voucher")
    parser.add_argument("--prefetch", type=int, default=500)
    parser.add_argument("--root", default="Voucher")
    args = parser.parse_args()
    relay(args.url, args.queue, args.exchange, args.routing_key, args.prefetch, args.root).run()


if __name__ == "__main__":
    main()
