"""Run a message through a route's steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from esb.errors import PermanentError, ProcessingError
from esb.message import Message
from esb.steps.base import Step, StepIO


class StepFailed(Exception):
    """A step failed: carries the error, the step's index and the message as it stood then."""

    def __init__(self, error: ProcessingError, index: int, message: Message):
        super().__init__(str(error))
        self.error = error
        self.index = index
        self.message = message


AfterStep = Callable[[int, Step, Message], None]


def run_steps(steps: Sequence[Step], message: Message, io: StepIO, start: int = 0,
              after_step: AfterStep | None = None) -> Message | None:
    """Run `steps` from index `start`; None when a filter stopped the message.

    `after_step(index, step, message)` is called after each step completes (the runtime
    records side effects in the idempotency store there).

    A failure is raised as StepFailed so that the runtime can resume at the failing step.
    An unexpected exception inside a step (a bug, a custom function raising) is permanent:
    retrying the same input would fail the same way.
    """
    for index in range(start, len(steps)):
        step = steps[index]
        try:
            result = step.run(message, io)
        except StepFailed:
            raise
        except ProcessingError as exc:
            raise StepFailed(exc.at_step(step.label), index, message) from exc
        except Exception as exc:  # noqa: BLE001 - any bug becomes a dead letter, not a crash loop
            error = PermanentError(f"the step raised {type(exc).__name__}: {exc}", step=step.label)
            raise StepFailed(error, index, message) from exc
        if result is None:
            return None
        message = result
        if after_step is not None:
            after_step(index, step, message)
    return message


def run_nested(steps: Sequence[Step], message: Message, io: StepIO) -> Message | None:
    """Run the steps of a branch (choice); their failure is reported by their own label."""
    try:
        return run_steps(steps, message, io)
    except StepFailed as failed:
        raise failed.error from failed
