"""Every own-account student's account bootstrapped at once: a unit (construct.py, the derived execution_policy.json)."""
