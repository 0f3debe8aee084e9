"""What stops a step or a run: every message names the step and what went wrong."""

from __future__ import annotations


class PipelineError(RuntimeError):
    """The run cannot go on; the message names the step and what went wrong."""


class StepFailed(PipelineError):
    def __init__(self, step: str, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.reason = message
        self.log_tail = log_tail or []


class FailStepReached(PipelineError):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"Fail step {step}: {message}")
        self.step = step
        self.reason = message
