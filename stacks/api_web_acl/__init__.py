"""The WAF web ACL unit: `construct.py` (ApiWebAcl, the association helper)."""
