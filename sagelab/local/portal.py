"""`sagelab class portal --roster R`: the student portal on 127.0.0.1, without AWS.

The same page and the same handler as the class stack's (stacks/student_portal/runtime/), behind
local stand-ins for what AWS does in front of them:

    /oauth2/authorize, /oauth2/token   the sign-in: a form that takes a roster email (or a course
                                       admin's) and, with PKCE as Cognito's hosted sign-in, gives
                                       the page an ID token (HS256, signed with a key of this run)
    /, /students/..., /class           API Gateway's part: the user pool authorizer verifies the
                                       token (signature, expiry, audience, and that the user is
                                       still on the roster: a removed row is a deleted user) and
                                       hands its claims to the handler in requestContext.authorizer
    /notebook/<student>?ticket=...     a stand-in notebook page naming the student, reachable only
                                       with the ticket the handler's presigned URL carries

The roster is read again at every sign-in and every request, as a deploy would update the pool.
Each student's local environment is `<workdir>/students/<id>/` (`sagelab run --workdir` there):
its last pipeline run is what the page shows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from sagelab.class_report import STATUS_COLUMNS
from sagelab.config import ConfigError
from sagelab.local.loopback import LoopbackHandler, LoopbackServer
from sagelab.local.serve import LambdaContextStandIn, _LocalServer, _send
from sagelab.naming import ResourceNames
from sagelab.roster import Student, read_roster
from stacks.student_portal.accounts import ADMIN_GROUP, admin_username

CLIENT_ID = "sagelab-local-portal"
MAX_BODY = 64 * 1024  # sign-in forms and the page's small JSON requests
TOKEN_SECONDS = 3600
SIGN_IN_PATH = "/oauth2"


@dataclass(frozen=True)
class Account:
    username: str
    email: str
    groups: tuple[str, ...]


def accounts(students: Sequence[Student], admin_emails: Sequence[str]) -> dict[str, Account]:
    """Who may sign in, by email (lower case, as Cognito compares them)."""
    found = {student.email.lower(): Account(student.student_id, student.email, ()) for student in students}
    for position, email in enumerate(admin_emails, start=1):
        found.setdefault(email.lower(), Account(admin_username(position), email, (ADMIN_GROUP,)))
    return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class LocalSignIn:
    """Tokens for roster emails, signed with a key of this run; `verify` is the authorizer's check."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    codes: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)

    def token(self, account: Account, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, account.username)),
            "cognito:username": account.username,
            "email": account.email,
            "cognito:groups": list(account.groups),
            "token_use": "id",
            "aud": CLIENT_ID,
            "iss": "sagelab-local-portal",
            "iat": issued,
            "exp": issued + TOKEN_SECONDS,
        }
        signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
        return f"{signing_input}.{_b64(hmac.new(self.key, signing_input.encode(), hashlib.sha256).digest())}"

    def verify(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        """The claims of a token this sign-in issued and that has not expired, else None."""
        parts = token.removeprefix("Bearer ").split(".")
        if len(parts) != 3:
            return None
        expected = hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _unb64(parts[2])):
                return None
            claims: dict[str, Any] = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        if claims.get("exp", 0) < (now if now is not None else time.time()):
            return None
        return claims

    def code_for(self, account: Account, challenge: str) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = ({"account": account}, challenge)
        return code

    def redeem(self, code: str, verifier: str) -> Account | None:
        """A code is good once, and only with the verifier whose S256 hash the page sent first."""
        entry = self.codes.pop(code, None)
        if entry is None:
            return None
        details, challenge = entry
        if not hmac.compare_digest(_b64(hashlib.sha256(verifier.encode()).digest()), challenge):
            return None
        account: Account = details["account"]
        return account


class LocalEnvironments:
    """The handler's `environments` locally: each student's local work directory, and notebook
    URLs that lead to a stand-in page naming the student (a ticket only the handler hands out)."""

    def __init__(self, workdir: Path, base_url: str, key: bytes) -> None:
        self.workdir, self.base_url, self.key = workdir, base_url, key

    def ticket(self, student_id: str) -> str:
        return _b64(hmac.new(self.key, f"notebook:{student_id}".encode(), hashlib.sha256).digest())

    def notebook_url(self, student: Any) -> str:
        return f"{self.base_url}/notebook/{student.student_id}?{urlencode({'ticket': self.ticket(student.student_id)})}"

    def status(self, student: Any) -> dict[str, str]:
        """class_report's columns, from the student's local work directory."""
        executions = sorted(
            (self.workdir / "students" / student.student_id / "executions").glob("*/execution.json"), key=lambda path: path.stat().st_mtime, reverse=True
        )
        status = dict.fromkeys(STATUS_COLUMNS, "")
        status.update(notebook_status="InService (local stand-in)", endpoint="none", last_run="none", budget_limit_usd="none")
        if executions:
            status["last_run"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(executions[0].stat().st_mtime))
            status["last_run_status"] = str(json.loads(executions[0].read_text()).get("status", ""))
        return {**status, "api_url": "http://127.0.0.1:8080 (sagelab serve)", "api_key_id": "", "api_key_hint": "the key `sagelab serve` prints when it starts"}


def configure_handler(students: Sequence[Student], region: str) -> ModuleType:
    """Give the handler the configuration the construct gives the deployed function."""
    from stacks.student_portal.runtime import handler

    os.environ["STUDENTS"] = handler.encode_students([handler.PortalStudent(s.student_id, s.account_id, s.region or region) for s in students], region)
    os.environ["REGION"] = region
    os.environ["CLIENT_ID"] = CLIENT_ID
    os.environ["ADMIN_GROUP"] = ADMIN_GROUP
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    handler.settings.cache_clear()
    return handler


class LocalPortal(_LocalServer):
    """The portal on 127.0.0.1 (port 0: any free port)."""

    def __init__(self, roster: Path, workdir: Path, admin_emails: Sequence[str] = (), region: str = "us-east-1", port: int = 0) -> None:
        self.roster, self.admin_emails, self.region = roster, tuple(admin_emails), region
        self.sign_in = LocalSignIn()
        self.handler = configure_handler(read_roster(roster), region)
        outer = self

        class Handler(LoopbackHandler):
            def do_GET(self) -> None:
                outer._handle(self, "GET")

            def do_POST(self) -> None:
                outer._handle(self, "POST")

        self.server = LoopbackServer(Handler, port, max_body=MAX_BODY)
        self.environments = LocalEnvironments(workdir, self.url, self.sign_in.key)
        self.handler.environments = self.environments  # type: ignore[attr-defined]  # the module's, as the front door's clients
        os.environ["SIGN_IN_URL"] = self.url  # the page adds /oauth2/..., as to the hosted sign-in domain
        self.handler.settings.cache_clear()

    def accounts(self) -> dict[str, Account]:
        return accounts(read_roster(self.roster), self.admin_emails)

    # -- routing -----------------------------------------------------------------------------------
    def _handle(self, request: LoopbackHandler, method: str) -> None:
        url = urlsplit(request.path)
        body = request.read_body()
        try:
            if url.path == f"{SIGN_IN_PATH}/authorize":
                self._authorize(request, method, parse_qs(url.query), parse_qs(body.decode()))
            elif url.path == f"{SIGN_IN_PATH}/token" and method == "POST":
                self._token(request, parse_qs(body.decode()))
            elif url.path.startswith("/notebook/"):
                self._notebook(request, url.path.removeprefix("/notebook/"), parse_qs(url.query).get("ticket", [""])[0])
            else:
                self._gateway(request, method, url.path, parse_qs(url.query))
        except ConfigError as error:  # the roster became unreadable while serving
            _send(request, 400, json.dumps({"error": "BadRoster", "message": str(error)}).encode())

    def _page(self, request: BaseHTTPRequestHandler, status: int, title: str, content: str) -> None:
        body = (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:2rem auto;padding:0 1rem}}"
            f"input,button{{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0 1rem}}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{content}</body></html>"
        )
        _send(request, status, body.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    def _authorize(self, request: BaseHTTPRequestHandler, method: str, query: dict[str, list[str]], form: dict[str, list[str]]) -> None:
        fields = {name: (form.get(name) or query.get(name) or [""])[0] for name in ("client_id", "redirect_uri", "code_challenge")}
        if fields["client_id"] != CLIENT_ID or not fields["redirect_uri"].startswith(self.url):
            self._page(request, 400, "Sign-in refused", "<p>Unknown client or redirect address.</p>")
            return
        hidden = "".join(f'<input type="hidden" name="{name}" value="{html.escape(value, quote=True)}">' for name, value in fields.items())
        form_html = (
            f'<form method="post" action="{SIGN_IN_PATH}/authorize">{hidden}<label for="email">Email</label>'
            '<input id="email" name="email" type="email" autocomplete="email" required autofocus><button type="submit">Sign in</button></form>'
            "<p>Local sign-in stand-in of <code>sagelab class portal</code>: any email on the roster signs in, with no password.</p>"
        )
        if method == "GET":
            self._page(request, 200, "Sign in to SageLab", form_html)
            return
        email = (form.get("email") or [""])[0].strip()
        account = self.accounts().get(email.lower())
        if account is None:
            message = f"<p role='alert'>No student or course admin with the email {html.escape(email)!s} is on the class roster: ask your instructor.</p>"
            self._page(request, 403, "Sign in to SageLab", message + form_html)
            return
        code = self.sign_in.code_for(account, fields["code_challenge"])
        _send(request, 302, b"", "text/plain", {"Location": f"{fields['redirect_uri']}?{urlencode({'code': code})}"})

    def _token(self, request: BaseHTTPRequestHandler, form: dict[str, list[str]]) -> None:
        account = self.sign_in.redeem((form.get("code") or [""])[0], (form.get("code_verifier") or [""])[0])
        if account is None or account.email.lower() not in self.accounts():
            _send(
                request,
                400,
                json.dumps({"error": "invalid_grant", "error_description": "this sign-in code is unknown, used or not yours; sign in again"}).encode(),
            )
            return
        _send(request, 200, json.dumps({"id_token": self.sign_in.token(account), "token_type": "Bearer", "expires_in": TOKEN_SECONDS}).encode())

    def _notebook(self, request: BaseHTTPRequestHandler, student_id: str, ticket: str) -> None:
        if not hmac.compare_digest(ticket, self.environments.ticket(student_id)):
            self._page(request, 403, "Not your notebook", "<p role='alert'>This notebook link is not valid: open your notebook from your SageLab page.</p>")
            return
        name = html.escape(ResourceNames.of(student_id).notebook)
        self._page(
            request,
            200,
            f"Notebook of {student_id}",
            f"<p>Local stand-in of <code>{name}</code>, the notebook instance of student <strong>{html.escape(student_id)}</strong>.</p>",
        )

    def _gateway(self, request: BaseHTTPRequestHandler, method: str, path: str, query: dict[str, list[str]]) -> None:
        """API Gateway with the user pool authorizer: every route but the page needs a valid token."""
        authorizer: dict[str, Any] = {}
        if path != "/":
            claims = self.sign_in.verify(request.headers.get("Authorization") or "")
            # Cognito: a deleted or disabled user cannot sign in again; locally the roster is the pool.
            if claims is None or str(claims.get("email", "")).lower() not in self.accounts():
                _send(request, 401, json.dumps({"error": "Unauthorized", "message": "sign in first: no valid token of a user on the roster"}).encode())
                return
            # As API Gateway's REST authorizer: claim values as text.
            authorizer = {"claims": {key: ",".join(value) if isinstance(value, list) else str(value) for key, value in claims.items()}}
        headers = dict(request.headers.items())
        event = {
            "resource": path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {key: [value] for key, value in headers.items()},
            "queryStringParameters": {key: values[-1] for key, values in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": path,
                "httpMethod": method,
                "path": path,
                "requestId": str(uuid.uuid4()),
                "stage": "local",
                "authorizer": authorizer,
            },
            "body": None,
            "isBase64Encoded": False,
        }
        response = self.handler.lambda_handler(event, LambdaContextStandIn(function_name="sagelab-local-portal", aws_request_id=str(uuid.uuid4())))
        merged = {**(response.get("headers") or {}), **{k: ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}}
        content_type = merged.pop("Content-Type", "application/json")
        merged.pop("Content-Length", None)
        _send(request, int(response["statusCode"]), str(response.get("body") or "").encode(), content_type, merged)


# -- `sagelab class portal` ---------------------------------------------------------------------------
def add_portal_parser(classroom: Any) -> None:
    """Registers `sagelab class portal` on the `class` command's subparsers."""
    p = classroom.add_parser("portal", help="serve the student portal locally: sign in as a roster email, open that student's page")
    p.add_argument("--roster", default="roster.csv")
    p.add_argument("--workdir", default=".sagelab", help="local environments: <workdir>/students/<id>/ (default .sagelab)")
    p.add_argument("--port", type=int, default=8090, help="port on 127.0.0.1 (default 8090)")
    p.add_argument("--config", help="the config whose classroom.admin_emails may sign in as admins (default cdk.json's)")
    p.set_defaults(func=cmd_class_portal)


def cmd_class_portal(args: Any) -> int:
    from sagelab.settings import load_project_config

    config = load_project_config(args.config)
    portal = LocalPortal(Path(args.roster), Path(args.workdir), config.classroom.admin_emails, config.environments[0].region, port=args.port).start()
    print(f"student portal: {portal.url}/  (sign in with an email of {args.roster}; Ctrl-C stops)", flush=True)
    try:
        while portal.thread is not None and portal.thread.is_alive():
            portal.thread.join(0.5)
    finally:
        portal.stop()
    return 0
