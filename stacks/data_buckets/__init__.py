"""The data buckets unit: `construct.py` (DataBuckets: the environment key and its buckets)."""
