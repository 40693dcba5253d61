"""Baseline I/O-bound relay: a pika consumer handing each message to a ThreadPoolExecutor that
POSTs it with one shared HTTP client (httpx by default; `--client urllib3`, the one esb's REST
adapter uses); the answer is published (persistent, mandatory, confirm mode) from the I/O thread,
and the source acked when that publish is confirmed.

    python -m bench.iorelay --url URL --queue Q --exchange X --endpoint http://127.0.0.1:P/vouchers
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pika
import urllib3


class IoRelay:
    def __init__(self, url: str, queue: str, exchange: str, routing_key: str, endpoint: str,
                 threads: int, prefetch: int, keepalive: int, client: str = "httpx"):
        self.queue, self.exchange, self.routing_key, self.endpoint = queue, exchange, routing_key, endpoint
        self.prefetch = prefetch
        self.post = _httpx_post(endpoint, threads, keepalive) if client == "httpx" else _urllib3_post(endpoint, threads)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="io")
        self.channel = None
        self.seq = 0
        self.pending: dict[int, int] = {}  # publish seq -> delivery tag, in publish order
        self.failed = 0
        self.connection = pika.SelectConnection(
            pika.URLParameters(url), on_open_callback=lambda c: c.channel(on_open_callback=self._on_channel),
            on_open_error_callback=lambda _c, e: self._fail(f"cannot connect: {e}"),
            on_close_callback=self._on_closed)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.connection.ioloop.add_callback_threadsafe(self._stop))
        self.connection.ioloop.start()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _stop(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def _on_closed(self, _connection, reason) -> None:
        print(f"{__name__}: connection closed: {reason}", file=sys.stderr)
        self.connection.ioloop.stop()

    def _fail(self, why: str) -> None:
        print(f"iorelay: {why}", file=sys.stderr)
        self.connection.ioloop.stop()

    def _on_channel(self, channel) -> None:
        self.channel = channel
        channel.confirm_delivery(self._on_confirm, callback=lambda _: channel.basic_qos(
            prefetch_count=self.prefetch, callback=lambda _: channel.basic_consume(self.queue, self._on_message)))

    def _on_message(self, _channel, method, properties, body) -> None:
        self.pool.submit(self._call, method.delivery_tag, properties, body)

    def _call(self, tag: int, properties, body: bytes) -> None:  # on a pool thread
        answer = self.post(body, {"Content-Type": "application/json", "Idempotency-Key": properties.message_id or ""})
        self.connection.ioloop.add_callback_threadsafe(functools.partial(self._publish, tag, properties, answer))

    def _publish(self, tag: int, properties, answer: bytes | None) -> None:  # on the I/O thread
        if answer is None:
            self.failed += 1
            self.channel.basic_nack(tag, requeue=True)
            return
        self.channel.basic_publish(self.exchange, self.routing_key, answer, pika.BasicProperties(
            delivery_mode=2, content_type="application/json", headers=properties.headers,
            message_id=properties.message_id), mandatory=True)
        self.seq += 1
        self.pending[self.seq] = tag

    def _on_confirm(self, frame) -> None:
        method = frame.method
        if not isinstance(method, pika.spec.Basic.Ack):
            self._fail(f"the broker nacked publish {method.delivery_tag}")
            return
        if method.multiple:
            done = []
            for seq in self.pending:
                if seq > method.delivery_tag:
                    break
                done.append(seq)
        else:
            done = [method.delivery_tag]
        for seq in done:
            tag = self.pending.pop(seq, None)
            if tag is not None:
                self.channel.basic_ack(tag)


def _httpx_post(endpoint: str, threads: int, keepalive: int):
    client = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=max(threads, 100),
                                                            max_keepalive_connections=keepalive))

    def post(body: bytes, headers: dict) -> bytes | None:
        try:
            response = client.post(endpoint, content=body, headers=headers)
        except httpx.HTTPError:
            return None
        return response.content if response.status_code == 201 else None
    return post


def _urllib3_post(endpoint: str, threads: int):
    url = urlsplit(endpoint)
    pool = urllib3.HTTPConnectionPool(url.hostname, url.port, maxsize=threads, block=True, timeout=10.0,
                                      retries=False)

    def post(body: bytes, headers: dict) -> bytes | None:
        try:
            response = pool.urlopen("POST", url.path, body=body, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError:
            return None
        return response.data if response.status == 201 else None
    return post


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--routing-key", default="receipt")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--keepalive", type=int, default=64)
    parser.add_argument("--client", choices=("httpx", "urllib3"), default="httpx")
    parser.add_argument("--cpu", type=int, help="pin the process to this core, as esb's cpu.affinity does")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    IoRelay(args.url, args.queue, args.exchange, args.routing_key, args.endpoint, args.threads,
            args.prefetch, args.keepalive, args.client).run()


if __name__ == "__main__":
    main()
