"""The release: an approved version carried from the environment that trains it to the ones that
promote from it (`promote_from`), across accounts (docs/decisions/0015). A unit: `construct.py` (the
pipeline), `source.py` and `target.py` (each account's side), `promotion.py` (who promotes from whom),
beside `runtime/` (the pipeline's functions and the acceptance test). `stacks/release_stack.py` composes it."""
