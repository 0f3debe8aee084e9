"""The approval deployer unit: `construct.py` (rule, function, deployment role), beside `runtime/` (the
function; the release and the spending cap ship its `deploy` too)."""
