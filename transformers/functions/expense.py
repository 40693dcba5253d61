"""Business rules of OA expense claims that JSON Schema cannot state."""

from __future__ import annotations

from decimal import Decimal

from esb.errors import BusinessError


def check_total(body: dict, headers: dict) -> dict:
    """Refuse a claim whose total is not the exact sum of its lines; return it unchanged."""
    lines = sum((_decimal(line["amount"]) for line in body["lines"]), Decimal(0))
    total = _decimal(body["total"])
    if lines != total:
        raise BusinessError(f"claim {body['claim_id']}: total {total} != sum of lines {lines} "
                            f"(difference {total - lines})")
    return body


def _decimal(value) -> Decimal:
    # JSON numbers arrive as Decimal; str() keeps a stray float's printed digits exact
    return value if isinstance(value, Decimal) else Decimal(str(value))
