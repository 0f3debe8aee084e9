"""Who the portal knows, without CDK (the construct and `sagelab class portal` both read this)."""

from __future__ import annotations

ADMIN_GROUP = "admins"  # course admins: they see the class report


def admin_username(position: int) -> str:
    """A course admin's user name: `admin.N` (a student id cannot contain a dot)."""
    return f"admin.{position}"
