"""The student portal: API Gateway (REST, Cognito user pool authorizer) -> this Lambda.

    GET /                                   the page (public: a shell with no data; it signs in)
    GET /students/{student}                 the student's environment (JSON): notebook status,
                                            API URL and key id, last pipeline runs, spend against
                                            the budget, the lab's next step
    GET /students/{student}/notebook        a presigned URL of the student's own notebook
    GET /class                              the class report (admins only)

Who calls comes only from the token's claims, which the authorizer has verified (API Gateway puts
them in `requestContext.authorizer.claims`; `sagelab class portal` does the same after verifying
its local tokens): `cognito:username` is the student id, set by the admin side (one user per
roster row, created by CloudFormation); no client can write it. A path naming another student is
refused with 403 and a message that says whose environment this caller may open.

Configuration (set by stacks/student_portal/construct.py):
    STUDENTS        JSON {student id: "" (the class account, REGION) | "ACCOUNT/REGION" | "/REGION"}
    REGION          the class's region
    CLIENT_ID       the user pool app client the page signs in with (the tokens' audience)
    SIGN_IN_URL     the hosted sign-in's base URL (https://DOMAIN.auth.REGION.amazoncognito.com)
    ADMIN_GROUP     the group whose members see the class report

A student's status is what `sagelab class report` reads (sagelab/class_report.py's
`student_status`, shipped with this function with the modules it needs: names come from
sagelab/naming.py, so the function and the stacks name every resource the same way).
"""

from __future__ import annotations

import html
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

from sagelab.naming import ResourceNames

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

PAGE = Path(__file__).with_name("page.html")
NOTEBOOK_SESSION_SECONDS = 1800  # how long the presigned notebook session lasts (SageMaker allows 1800..43200)
NOT_AVAILABLE = "n/a: "  # how class_report marks a value it could not read

logger = Logger(service="sagelab-student-portal")
app = APIGatewayRestResolver()


class Refused(Exception):
    """A request the portal refuses: status, error code and a message the page shows as it is."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class PortalStudent:
    """A roster row as the portal needs it: where the student's environment is."""

    student_id: str
    account_id: str | None  # None: the class account
    region: str


def encode_students(students: list[PortalStudent], class_region: str) -> str:
    """The STUDENTS value (compact: a Lambda's environment is at most 4 KB)."""

    def where(student: PortalStudent) -> str:
        if student.account_id is None and student.region == class_region:
            return ""
        return f"{student.account_id or ''}/{student.region}"

    return json.dumps({student.student_id: where(student) for student in students}, separators=(",", ":"))


def decode_students(text: str, class_region: str) -> dict[str, PortalStudent]:
    students = {}
    for student_id, where in json.loads(text).items():
        account, _, region = where.partition("/")
        students[student_id] = PortalStudent(student_id, account or None, region or class_region)
    return students


@dataclass(frozen=True)
class Caller:
    """Who signed in, from verified claims."""

    username: str
    groups: tuple[str, ...]

    def is_admin(self, admin_group: str) -> bool:
        return admin_group in self.groups


def caller_from_claims(claims: Any, client_id: str) -> Caller:
    """The one path from verified claims to a caller (the deployed authorizer's and the local
    stand-in's claims alike). Only an ID token of this page's client identifies a caller."""
    if not isinstance(claims, dict) or not claims.get("cognito:username"):
        raise Refused(401, "Unauthorized", "sign in first: this request carries no verified identity")
    if claims.get("token_use") != "id" or claims.get("aud") != client_id:
        raise Refused(401, "Unauthorized", "this token is not an ID token of the class portal; sign in again")
    raw = claims.get("cognito:groups") or ""
    # REST API authorizers pass list claims as text ("a,b" or "[a b]"); a local token as a list.
    groups = raw if isinstance(raw, list) else raw.strip("[]").replace(",", " ").split()
    return Caller(username=str(claims["cognito:username"]), groups=tuple(str(group) for group in groups))


class Environments(Protocol):
    """Where the portal reads a student's environment: AWS (AwsEnvironments) or the local twin."""

    def notebook_url(self, student: PortalStudent) -> str: ...

    def status(self, student: PortalStudent) -> dict[str, str]:
        """sagelab/class_report.py's columns for the student, plus `api_url` and `api_key_id`."""
        ...


@dataclass(frozen=True)
class Settings:
    students: dict[str, PortalStudent]
    client_id: str
    sign_in_url: str
    admin_group: str
    region: str


@cache
def settings() -> Settings:
    region = os.environ["REGION"]
    return Settings(
        students=decode_students(os.environ["STUDENTS"], region),
        client_id=os.environ["CLIENT_ID"],
        sign_in_url=os.environ.get("SIGN_IN_URL", ""),
        admin_group=os.environ.get("ADMIN_GROUP", "admins"),
        region=region,
    )


@cache
def own_sts() -> Any:
    """STS as the function's own role, made once per execution environment (not per own-account
    student and request), of its own session: the class report's threads share no session."""
    from sagelab.aws_session import new_session

    return new_session().client("sts")


class AwsEnvironments:
    """The deployed environments: the class account's with the function's own role, an
    own-account student's through their portal role (which trusts only this function's role)."""

    def _session(self, student: PortalStudent) -> Any:
        # On the process's shared botocore loader: a warm function parses each service's model once,
        # not once per student and request (sagelab/aws_session.py, shipped with the function).
        from sagelab.aws_session import new_session

        if student.account_id is None:
            return new_session(region_name=student.region)
        role_arn = f"arn:aws:iam::{student.account_id}:role/{ResourceNames.of(student.student_id).portal_presign_role}"
        credentials = own_sts().assume_role(RoleArn=role_arn, RoleSessionName=f"portal-{student.student_id}")["Credentials"]
        return new_session(
            region_name=student.region,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def notebook_url(self, student: PortalStudent) -> str:
        sagemaker = self._session(student).client("sagemaker")
        answer = sagemaker.create_presigned_notebook_instance_url(
            NotebookInstanceName=ResourceNames.of(student.student_id).notebook, SessionExpirationDurationInSeconds=NOTEBOOK_SESSION_SECONDS
        )
        return str(answer["AuthorizedUrl"])

    def status(self, student: PortalStudent) -> dict[str, str]:
        from sagelab.aws_ops import AwsOperations, OperationError
        from sagelab.class_report import student_status

        try:
            ops = AwsOperations(self._session(student))
        except Exception as error:  # the student's account cannot be reached: say so, in every column
            logger.warning("could not reach the student's account", exc_info=error)
            return {"notebook_status": f"{NOT_AVAILABLE}the portal cannot reach this account"}
        status = student_status(ops, student.student_id, student.account_id)
        try:
            outputs = ops.stack_outputs(ResourceNames.of(student.student_id).serving_stack) or {}
        except OperationError as error:
            outputs = {"ApiUrl": f"{NOT_AVAILABLE}{error}"}
        return {**status, "api_url": outputs.get("ApiUrl", ""), "api_key_id": outputs.get("ApiKeyId", "")}


# Replaced by `sagelab class portal` with the local environments.
environments: Environments = AwsEnvironments()


def next_step(status: dict[str, str]) -> str:
    """The lab's next step, from where the student is; each names a section of the lab notebook
    (sagelab/notebooks/sagemaker_lab.ipynb, which tests/test_student_portal.py checks)."""
    notebook = status.get("notebook_status", "")
    last_run = status.get("last_run", "")
    result = status.get("last_run_status", "")
    if notebook in ("Stopped", "Failed"):
        return "Open your notebook (it starts in a few minutes), then work through sagemaker_lab.ipynb from '1. Prepare and look at the data'."
    if last_run in ("", "none") or last_run.startswith(NOT_AVAILABLE):
        return "Open your notebook and work through '1. Prepare and look at the data' and '2. Run the pipeline': your first run trains and registers a model."
    if result in ("Executing", "Stopping"):
        return "Your pipeline is running: follow it in your notebook ('3. Follow the training step's log'); it takes a few minutes."
    if result in ("Failed", "Stopped"):
        return "Your last run did not succeed: read its log in your notebook ('3. Follow the training step's log'), fix, and run '2. Run the pipeline' again."
    return "Your model is registered: look at it ('4. Evaluate: metrics and plots'), then '5. Approve the model' and call your API ('6. Predict new rows')."


def for_student(status: dict[str, str]) -> dict[str, str]:
    """What a student sees of their status: why a value is missing stays in the log and the admins'
    report (it may name roles and accounts), the student reads "not available"."""
    return {key: "not available" if value.startswith(NOT_AVAILABLE) else value for key, value in status.items()}


def _caller() -> Caller:
    authorizer = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    return caller_from_claims(authorizer.get("claims"), settings().client_id)


def _own_student(requested: str) -> PortalStudent:
    """The caller's own environment, or a refusal saying why: a student may open only their own."""
    caller = _caller()
    config = settings()
    if caller.username not in config.students:
        raise Refused(403, "Forbidden", f"you are signed in as {caller.username!r}, who is not a student of this class")
    if requested != caller.username:
        raise Refused(
            403,
            "Forbidden",
            f"you are signed in as {caller.username!r} and may open only {caller.username!r}'s environment, not {requested!r}",
        )
    return config.students[caller.username]


@app.exception_handler(Refused)
def _refused(error: Refused) -> Response[str]:
    return _json(error.status, {"error": error.code, "message": error.message, "requestId": _request_id()})


def _request_id() -> str:
    return str(app.current_event.request_context.request_id or "")


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body), headers={"Cache-Control": "no-store"})


@app.get("/")
def page() -> Response[str]:
    config = settings()
    values = {"CLIENT_ID": config.client_id, "SIGN_IN_URL": config.sign_in_url, "ADMIN_GROUP": config.admin_group}
    text = PAGE.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"%{key}%", html.escape(value, quote=True))
    headers = {
        "Cache-Control": "no-store",
        # Only this page's own script and the sign-in service: no outside code, no framing.
        "Content-Security-Policy": f"default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' {config.sign_in_url}; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=text, headers=headers)


@app.get("/students/<student>")
def student_environment(student: str) -> Response[str]:
    own = _own_student(student)
    status = environments.status(own)
    return _json(200, {"student": own.student_id, **for_student(status), "next_step": next_step(status)})


@app.get("/students/<student>/notebook")
def student_notebook(student: str) -> Response[str]:
    own = _own_student(student)
    try:
        url = environments.notebook_url(own)
    except Exception as error:  # what AWS said goes to the log; the page gets what to do
        logger.warning("could not presign the notebook", exc_info=error)
        code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__) if hasattr(error, "response") else type(error).__name__
        raise Refused(
            502,
            "NotebookUnavailable",
            f"your notebook could not be opened ({code}): it may be starting or not deployed yet; try again in a few minutes, or ask your instructor",
        ) from None
    return _json(200, {"student": own.student_id, "url": url, "expires_in_seconds": NOTEBOOK_SESSION_SECONDS})


@app.get("/class")
def class_report() -> Response[str]:
    caller = _caller()
    config = settings()
    if not caller.is_admin(config.admin_group):
        raise Refused(403, "Forbidden", f"the class report is for the course admins (group {config.admin_group!r}); you are signed in as {caller.username!r}")

    def row(student: PortalStudent) -> dict[str, str]:
        status = environments.status(student)
        return {"student": student.student_id, **status, "next_step": next_step(status)}

    # Each student is a few API calls; read them side by side to stay within API Gateway's 29 s.
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(row, config.students.values()))
    return _json(200, {"students": rows})


@app.not_found
def _not_found(_error: Exception) -> Response[str]:
    return _json(404, {"error": "NotFound", "message": f"no page {app.current_event.path}", "requestId": _request_id()})


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
