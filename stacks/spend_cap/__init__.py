"""The spending cap of a class: a unit (the construct, `construct.py`, beside its Lambda, `runtime/`)."""
