"""The I/O route as a peer framework would write it: FastStream 0.7 (RabbitBroker, aio-pika) with aiohttp.

One process, one asyncio loop: a subscriber at prefetch 64 (aio-pika runs each delivery as a task,
so 64 calls are in flight, as in esb and bench/iorelay.py), each message POSTed with one shared
aiohttp ClientSession, the answer published persistent + mandatory with publisher confirms, and
the source acked after that publish returns (nacked and requeued if the call fails).

    python -m bench.fsrelay --url URL --queue Q --exchange X --routing-key K --endpoint http://127.0.0.1:P/vouchers
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange, RabbitMessage, RabbitQueue

PREFETCH = 64


async def serve(url: str, queue: str, exchange: str, routing_key: str, endpoint: str, prefetch: int) -> None:
    broker = RabbitBroker(url, default_channel=Channel(prefetch_count=prefetch), logger=None)
    target = RabbitExchange(exchange, declare=False) if exchange else None  # the bench declared it
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=prefetch),
                                    timeout=aiohttp.ClientTimeout(total=10))

    @broker.subscriber(RabbitQueue(queue, declare=False), ack_policy=AckPolicy.NACK_ON_ERROR)
    async def relay(message: RabbitMessage) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.message_id or ""}
        async with session.post(endpoint, data=message.body, headers=headers) as response:
            answer = await response.read()
            if response.status != 201:
                raise RuntimeError(f"the endpoint answered {response.status}")
        await broker.publish(answer, exchange=target, routing_key=routing_key, persist=True, mandatory=True,
                             content_type="application/json", message_id=message.message_id,
                             headers=message.headers)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await broker.start()
    try:
        await stop.wait()
    finally:
        await broker.stop()
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--exchange", required=True, help='"": the default exchange')
    parser.add_argument("--routing-key", default="receipt")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--prefetch", type=int, default=PREFETCH)
    args = parser.parse_args()
    asyncio.run(serve(args.url, args.queue, args.exchange, args.routing_key, args.endpoint, args.prefetch))


if __name__ == "__main__":
    main()
