"""The cost guardrail unit: `construct.py` (StudentGuardrails: the environment budget)."""
