"""The I/O-bound route's endpoint: esb's StubHttpServer answering 201 + a small JSON receipt after
a fixed delay, in a process of its own (its handler threads must not share the bench's GIL).

    python -m bench.httpsink --delay 0.02
prints `PORT <n>`, then answers stdin: `stats` -> one JSON line {requests, connections}; EOF stops.
"""

from __future__ import annotations

import argparse
import json
import sys

from esb.testing.http import StubHttpServer, StubResponse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.02)
    args = parser.parse_args()
    server = StubHttpServer().start()
    server.set_default(StubResponse(201, {"voucher_id": "GL-2024-03-004417", "status": "posted"}, delay=args.delay))
    connections = [0]
    inner = server._server  # noqa: SLF001 - count TCP connections (keep-alive reuse) for the report
    accept = inner.process_request

    def counting(request, address):
        connections[0] += 1  # only the server's accept thread runs this
        accept(request, address)
    inner.process_request = counting
    print(f"PORT {server.port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps({"requests": len(server.requests), "connections": connections[0]}), flush=True)
    server.stop()


if __name__ == "__main__":
    main()
