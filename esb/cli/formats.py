"""The route and adapter file formats as `esb routes explain` shows them: the schemas that validate them,
with a description and an example each."""

from __future__ import annotations

from esb.adapters.kinds import ADAPTER_KINDS
from esb.routes.schema import ROUTE

ROUTE_EXAMPLE = {
    "name": "oa-expense-to-voucher",
    "description": "Approved expense claims from OA become vouchers in the ledger.",
    "source": {"exchange": "oa.events", "binding_key": "expense.approved"},
    "concurrency": 16,
    "idempotency": {"key": "claim_id"},
    "retry": {"attempts": 6, "in_process": 2, "backoff": {"initial": "1s", "multiplier": 4, "max": "10m"}},
    "steps": [{"label": "check-claim", "validate": {"json_schema": "transformers/schemas/expense-approved.json"}},
              {"label": "create-voucher", "to": {"adapter": "ledger-rest", "operation": "create_voucher"}}],
}

ADAPTER_EXAMPLE = {
    "name": "ledger-rest",
    "kind": "rest",
    "base_url": "https://ledger.example.com/api",
    "auth": {"bearer": {"token": "${LEDGER_TOKEN}"}},
    "operations": {"create_voucher": {"method": "POST", "path": "/vouchers"}},
}

FILE_FORMATS = {
    "route": {**ROUTE, "examples": [ROUTE_EXAMPLE],
              "description": "A route file, routes/NAME.yaml: the queue it consumes (`source`), its steps in order, "
                             "how it retries and how it knows a message it has seen. `esb routes explain KIND` "
                             "tells what each step kind takes."},
    "adapter": {"type": "object", "required": ["name", "kind"], "examples": [ADAPTER_EXAMPLE],
                "description": "An adapter file, adapters/NAME.yaml: one system that routes call by name "
                               "(`to: {adapter: NAME, operation: OP}`), its connection and its operations. "
                               "The fields after `kind` depend on it: `esb routes explain rest` (or soap, sftp).",
                "properties": {"name": ADAPTER_KINDS["rest"]["properties"]["name"],
                               "kind": {"enum": sorted(ADAPTER_KINDS), "description": "the kind of system"},
                               "description": {"type": "string"}}},
}
