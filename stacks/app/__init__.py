"""The app plumbing, apart from the units and stacks it wires: `builder.py` (config -> stacks),
`nag.py` (cdk-nag packs and acknowledgments), `classroom.py` (the student template stamped per
student), `account_quotas.py` (the synthesized app against the account quotas)."""
