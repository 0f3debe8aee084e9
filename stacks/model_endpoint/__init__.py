"""The endpoint unit: `construct.py` (ModelEndpoint: model, endpoint config, endpoint, scaling)."""
