"""One esb worker as `esb run --workers 1` runs it (esb.runtime.supervisor.run_worker), with the
idempotency store optionally left out, to measure what the store costs on a route with a `to`.

    python -m bench.esbworker --root DIR --broker URL [--no-store]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from esb.cli.main import configure_logging
from esb.loading.project import load_project
from esb.runtime.affinity import pin_worker
from esb.runtime.connect import make_broker
from esb.runtime.runtime import Runtime, open_store_for
from esb.runtime.supervisor import stop_signals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--no-store", action="store_true")
    args = parser.parse_args()
    configure_logging("warning")
    stop = stop_signals()
    project = load_project(Path(args.root).resolve())
    pin_worker(project.settings.cpu_affinity)  # as run_worker does
    store = None if args.no_store else open_store_for(project)
    runtime = Runtime(project, make_broker(args.broker, project.settings.heartbeat), store=store)
    runtime.start()
    stop.wait()
    runtime.stop()


if __name__ == "__main__":
    main()
