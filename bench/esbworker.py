"""One esb worker exactly as `esb run --workers 1` runs it (esb.runtime.supervisor.run_worker:
middleware, metrics, health probe, reloader, interpreter tuning), with the idempotency store
optionally left out, to measure what the store alone costs a route with a `to`.

    python -m bench.esbworker --root DIR --broker URL [--no-store]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from esb.cli.main import configure_logging
from esb.loading.project import load_project
from esb.runtime import supervisor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--no-store", action="store_true")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    settings = load_project(root).settings
    configure_logging(settings.log_level)
    if args.no_store:
        supervisor.open_store_for = lambda _project: None  # the one difference from `esb run`
    supervisor.run_worker(root, args.broker, None, metrics_listen=settings.metrics_listen)


if __name__ == "__main__":
    main()
