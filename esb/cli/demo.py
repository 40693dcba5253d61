"""`esb demo`: the sample routes end to end on the embedded broker with stand-in servers."""

from __future__ import annotations

import click


@click.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run the sample finance routes against stand-in ledger, OA and bank servers."""
    from esb.demo import run_demo
    outcomes = run_demo(ctx.obj.resolve(), click.echo)
    passed = sum(o.ok for o in outcomes)
    click.echo(f"\n{passed} of {len(outcomes)} scenarios came out as expected")
    ctx.exit(0 if passed == len(outcomes) else 1)
