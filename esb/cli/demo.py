"""`esb demo`: the sample routes end to end on the embedded broker with stand-in servers."""

from __future__ import annotations

import click


@click.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run the sample finance routes against stand-in ledger, OA and bank servers."""
    from esb.demo import NOT_RUN, run_demo
    outcomes = run_demo(ctx.obj.resolve(), click.echo)
    played = [o for o in outcomes if o.result != NOT_RUN]
    passed = sum(o.ok for o in played)
    skipped = f" ({len(outcomes) - len(played)} not run: no bank SFTP server)" if len(played) < len(outcomes) else ""
    click.echo(f"\n{passed} of {len(played)} scenarios came out as expected{skipped}")
    ctx.exit(0 if passed == len(played) else 1)
