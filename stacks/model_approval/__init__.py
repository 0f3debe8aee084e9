"""The manual approval gate unit: `construct.py` (ModelApproval)."""
