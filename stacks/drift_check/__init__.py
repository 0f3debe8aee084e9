"""The drift check unit (decision 0013): `construct.py` (schedule, function, alarms), beside `runtime/`
(the function, and the comparison `sagelab monitor` runs too)."""
