"""The execution roles unit: `construct.py` (ExecutionRoles: the notebook, pipeline and endpoint roles)."""
