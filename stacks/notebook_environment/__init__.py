"""The notebook unit: `construct.py` (instance, lifecycle configuration), beside `runtime/` (the
on-start script and the idle auto-stop the instance runs)."""
