"""The release: an approved version carried from the environment that trains it to the ones that
promote from it (`promote_from`), across accounts (docs/decisions/0015)."""
