"""The spending cap's Lambda: meters SageMaker spend per student from state-change events, and enforces the cap."""
