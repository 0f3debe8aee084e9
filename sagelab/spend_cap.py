"""`sagelab class lift <student> [--cap N]`: lift a student's spending cap (stacks/spend_cap).

The cap's own enforcer does the work (one place): this asks it, through lambda:InvokeFunction, to
detach the class's deny from the student's roles and set the student's cap for the month to N
dollars (default: what they have spent plus the class's cap). The function is found by the class
stack's output in the region (`sagelab-class--<region>`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sagelab.aws_ops import AwsOperations, OperationError, translate
from sagelab.naming import CLASS_ID, ResourceNames

SPEND_CAP_FUNCTION_OUTPUT = "SpendCapFunctionName"


def class_stack_name(region: str) -> str:
    """The stack a class keeps per region (web ACL, dashboard, spending cap): the class is a tenant of its own."""
    return ResourceNames.of(CLASS_ID).name(region)


@dataclass(frozen=True)
class Lifted:
    student: str
    spent_usd: float
    cap_usd: float


def lift(ops: AwsOperations, region: str, student: str, cap_usd: float | None) -> Lifted:
    stack = class_stack_name(region)
    outputs = ops.stack_outputs(stack)
    if outputs is None or SPEND_CAP_FUNCTION_OUTPUT not in outputs:
        raise OperationError(f"{stack} has no spending cap in this account and region (deploy the class with classroom.spend_cap: true, or pass --region)")
    payload: dict[str, Any] = {"action": "lift", "student": student}
    if cap_usd is not None:
        payload["cap_usd"] = cap_usd
    functions = ops.client("lambda")
    response = translate(functions.invoke, FunctionName=outputs[SPEND_CAP_FUNCTION_OUTPUT], Payload=json.dumps(payload).encode())
    body = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        # The enforcer refuses with one line: an unknown student, a cap not above the spend.
        raise OperationError(f"lift refused: {body.get('errorMessage', body)}")
    return Lifted(student=body["student"], spent_usd=float(body["spent_usd"]), cap_usd=float(body["cap_usd"]))
