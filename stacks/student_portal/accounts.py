"""Who the portal knows, without CDK (the construct and `sagelab class portal` both read this)."""

from __future__ import annotations

from sagelab.naming import ResourceNames
from stacks.student_portal.runtime.handler import STUDENT_PLACEHOLDER

ADMIN_GROUP = "admins"  # course admins: they see the class report


def admin_username(position: int) -> str:
    """A course admin's user name: `admin.N` (a student id cannot contain a dot)."""
    return f"admin.{position}"


def handler_names() -> dict[str, str]:
    """The handler's NAMES: each resource of a student, with a placeholder for the id."""
    names = ResourceNames.of(STUDENT_PLACEHOLDER)
    return {
        "notebook": names.notebook,
        "pipeline": names.pipeline,
        "budget": names.budget,
        "serving_stack": names.serving_stack,
        "presign_role": names.portal_presign_role,
    }
