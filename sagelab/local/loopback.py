"""The HTTP plumbing every local server shares: `sagelab serve`'s gateway and endpoint, and the
loopback SageMaker API the local runner starts for AutoML jobs.

What a request meets before any route sees it (each refusal a JSON body, never a dropped connection):

    bind      127.0.0.1 only: nothing off this machine can connect
    Host      127.0.0.1[:port] or localhost[:port], else 421: a web page whose name was rebound to
              127.0.0.1 (DNS rebinding) sends its own name and is refused
    framing   one Content-Length of digits, else 400; Transfer-Encoding, 411; over the server's cap,
              413 before a byte of the body is read
    time      every read waits at most `read_timeout` seconds; a connection still sending its request
              when the server is full is closed for a new one (the oldest such first), so a few hundred
              stalled sockets (slowloris) cannot keep GET /health from being answered
    auth      the routes check the API key or the SigV4 signature (`sigv4_problem`) from the headers,
              then read the body (`read_body`), then verify the signature over the body received

SigV4 is verified as AWS does: the signature is recomputed over the body's own SHA-256, never over a
hash the client claims in X-Amz-Content-SHA256, and UNSIGNED-PAYLOAD is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
import socket
import sys
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

LOOPBACK_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
READ_TIMEOUT_S = 10.0  # per read of the request line, a header or the body
MAX_CONNECTIONS = 64  # per server; far below any file-descriptor limit (macOS's default is 256)
DRAIN_LIMIT = 64 * 1024  # an unread body up to this size is read and dropped to keep the connection alive
LOCAL_REGION = "us-east-1"
MAX_SIGV4_SKEW_SECONDS = 5 * 60  # AWS refuses signatures older (or newer) than 5 minutes
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")  # RFC 9110: 1*DIGIT (int() would also take "-5", "+5", "1_0")
_BUSY = json.dumps({"error": "ServiceUnavailable", "message": "too many connections to this local server; retry"}).encode()
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\n"
    + f"Content-Length: {len(_BUSY)}\r\n\r\n".encode()
    + _BUSY
)


class ClientGone(ConnectionError):
    """The client closed (or was closed) before sending the whole body: nothing to answer."""


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 with at most `max_connections` open connections.

    Each connection is either reading its request (evictable) or being answered (busy). When a new
    connection arrives at the cap, the oldest evictable one is closed; when none is, the new one gets
    a 503. `max_body` is the largest body a request may announce (413 above it)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        handler: type[LoopbackHandler],
        port: int = 0,
        *,
        max_body: int,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT_S,
    ) -> None:
        self.max_body = max_body
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self._connections: dict[socket.socket, bool] = {}  # -> evictable; insertion order is age
        self._connections_lock = threading.Lock()
        super().__init__((LOOPBACK_HOST, port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            if len(self._connections) >= self.max_connections:
                victim = next((connection for connection, evictable in self._connections.items() if evictable), None)
                if victim is not None:
                    del self._connections[victim]
                    with contextlib.suppress(OSError):
                        victim.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and ends
            full = len(self._connections) >= self.max_connections
            if not full:
                self._connections[request] = True
        if full:
            with contextlib.suppress(OSError):
                request.settimeout(1)
                request.sendall(_BUSY_RESPONSE)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def mark(self, connection: socket.socket, *, evictable: bool) -> None:
        with self._connections_lock:
            if connection in self._connections:
                self._connections[connection] = evictable

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close every open connection (stop(): threads blocked on a silent client end now)."""
        with self._connections_lock:
            connections, self._connections = list(self._connections), {}
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # a client that vanished or stalled mid-request is no error of ours
        super().handle_error(request, client_address)


class LoopbackHandler(BaseHTTPRequestHandler):
    """Checks Host and framing before the route (`do_<METHOD>`) runs; `read_body()` gives the body."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the peer's
    # delayed ACK (~40 ms per request on Linux).
    disable_nagle_algorithm = True
    body_length = 0
    body_read = True
    _expects_continue = False

    @property
    def loopback(self) -> LoopbackServer:
        return cast(LoopbackServer, self.server)

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.loopback.read_timeout)  # each read (and write) waits at most this long

    def log_message(self, format: str, *args: Any) -> None:
        return

    def error_payload(self, code: str, message: str) -> dict[str, Any]:
        """The JSON of a refusal; a server speaking another AWS protocol overrides it."""
        return {"error": code, "message": message, "requestId": str(uuid.uuid4())}

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every refusal before a route (and http.server's own: bad request line, oversized headers) in
        JSON. The reason phrase is the status's own, never the message, which may quote the client."""
        self.close_connection = True
        status = HTTPStatus(code) if code in HTTPStatus._value2member_map_ else HTTPStatus.BAD_REQUEST
        error = status.phrase.replace(" ", "")
        body = json.dumps(self.error_payload(error, message or status.description)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-ErrorType", error)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.wfile.write(body)

    # -- before the route ---------------------------------------------------------------------------
    def handle_one_request(self) -> None:
        self.body_length, self.body_read, self._expects_continue = 0, True, False
        try:
            super().handle_one_request()
            if not self.close_connection and not self.body_read:
                self._drop_unread_body()
        except (ConnectionError, TimeoutError):  # ClientGone, or a stall while dropping an unread body
            self.close_connection = True
        finally:
            self.loopback.mark(self.connection, evictable=True)  # waiting for the next request

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = self._host_problem()
        if problem is not None:
            self.send_error(*problem)
            return False
        problem = self._framing_problem()
        if problem is not None:
            self.send_error(*problem)
            return False
        if not self.body_length:
            self.loopback.mark(self.connection, evictable=False)
        return True

    def handle_expect_100(self) -> bool:
        # `100 Continue` goes out only when a route reads the body: a request refused before (no key,
        # too large, wrong Host) never invites its body.
        self._expects_continue = True
        return True

    def _host_problem(self) -> tuple[int, str] | None:
        hosts = self.headers.get_all("Host") or []
        port = self.loopback.server_port
        expected = f"127.0.0.1:{port} or localhost:{port}"
        if len(hosts) != 1:
            return HTTPStatus.BAD_REQUEST, f"send exactly one Host header ({expected}), not {len(hosts)}"
        allowed = {*LOOPBACK_NAMES, *(f"{name}:{port}" for name in LOOPBACK_NAMES)}
        if hosts[0].strip().lower() not in allowed:
            # 421: this server answers only for its loopback names (a rebound DNS name is refused).
            return HTTPStatus.MISDIRECTED_REQUEST, f"Host {hosts[0][:80]!r} is not this local server; it answers for {expected} only"
        return None

    def _framing_problem(self) -> tuple[int, str] | None:
        if self.headers.get_all("Transfer-Encoding"):
            return HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding is not accepted: send the body with a Content-Length"
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            return None
        (value,) = values if len(values) == 1 else ("",)
        if not _CONTENT_LENGTH.fullmatch(value):
            shown = ", ".join(repr(v[:20]) for v in sorted(values))
            return HTTPStatus.BAD_REQUEST, f"Content-Length must be one non-negative decimal integer (the body's size in bytes), not {shown}"
        length = int(value)
        if length > self.loopback.max_body:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is {length} bytes; this API accepts at most {self.loopback.max_body}"
        self.body_length, self.body_read = length, length == 0
        return None

    # -- the body -----------------------------------------------------------------------------------
    def read_body(self) -> bytes:
        """The request body (its size already checked against the cap). Raises ClientGone when the
        client stops short: there is nobody to answer."""
        if self.body_read:
            return b""
        if self._expects_continue:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        body = self.rfile.read(self.body_length)
        self.body_read = True
        if len(body) != self.body_length:
            raise ClientGone(f"{len(body)} of {self.body_length} body bytes arrived")
        self.loopback.mark(self.connection, evictable=False)
        return body

    def end_headers(self) -> None:
        # An answer given before a large body was read ends the connection: the rest of the body
        # must never be read as the next request, and reading it is what the refusal avoids.
        if not self.body_read and self.body_length > DRAIN_LIMIT and not self.close_connection:
            self.send_header("Connection", "close")
        super().end_headers()

    def _drop_unread_body(self) -> None:
        """A small body a route did not need (a 404 for a POST) is read and dropped, so the client's
        kept-alive connection stays in step."""
        if self._expects_continue:
            self.close_connection = True  # the client waits for our word and never sent the body
            return
        received = self.rfile.read(self.body_length)
        self.body_read = True
        if len(received) != self.body_length:
            self.close_connection = True


# -- SigV4 ------------------------------------------------------------------------------------------
SIGV4_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def new_local_credentials() -> Credentials:
    """A random key pair for one run of the local servers: only the processes it is handed to can sign."""
    return Credentials(f"AKIALOCAL{secrets.token_hex(6).upper()}", secrets.token_urlsafe(30))


def sigv4_problem(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    secrets_by_key: Mapping[str, str],
    *,
    service: str = "execute-api",
    now: datetime | None = None,
) -> str | None:
    """Why a request's SigV4 signature does not verify, or None if it does. With `body` None, only
    what the headers say is checked (before the body is read); then call again with the body.

    The signature is recomputed with botocore's signer over the headers the client says it signed
    and the SHA-256 of the body received."""
    lower = {name.lower(): value for name, value in headers.items()}
    authorization = lower.get("authorization")
    if not authorization:
        return "missing Authorization header: sign the request with SigV4"
    match = SIGV4_AUTHORIZATION.fullmatch(authorization.strip())
    if match is None:
        return "the Authorization header is not an AWS4-HMAC-SHA256 signature"
    secret = secrets_by_key.get(match["key"])
    if secret is None:
        return "the security token included in the request is invalid (unknown access key)"
    if match["service"] != service or match["region"] != LOCAL_REGION:
        return f"credential scope must be {LOCAL_REGION}/{service}, not {match['region']}/{match['service']}"
    signed = match["signed"].split(";")
    amz_date = lower.get("x-amz-date", "")
    if "host" not in signed or "x-amz-date" not in signed or any(name not in lower for name in signed):
        return "SignedHeaders must include host and x-amz-date, and every signed header must be sent"
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "X-Amz-Date is not a SigV4 timestamp (YYYYMMDDTHHMMSSZ)"
    if abs(((now or datetime.now(UTC)) - signed_at).total_seconds()) > MAX_SIGV4_SKEW_SECONDS or amz_date[:8] != match["date"]:
        return "signature expired or from the future: X-Amz-Date must be within 5 minutes of now"
    claimed = lower.get("x-amz-content-sha256")
    if claimed == UNSIGNED_PAYLOAD:
        return f"X-Amz-Content-SHA256: {UNSIGNED_PAYLOAD} is refused: sign the SHA-256 of the body"
    if body is None:
        return None
    body_hash = hashlib.sha256(body).hexdigest()
    if claimed is not None and claimed != body_hash:
        return "X-Amz-Content-SHA256 is not the SHA-256 of the body sent: sign exactly the body you send"
    request = AWSRequest(method=method, url=url, data=body, headers={name: lower[name] for name in signed})
    request.context["timestamp"] = amz_date
    signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(Credentials(match["key"], secret, lower.get("x-amz-security-token")), service, LOCAL_REGION)
    # The payload line is the hash of what arrived, whatever the client's header says.
    canonical = signer.canonical_request(request).rsplit("\n", 1)[0] + "\n" + body_hash
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return "the request signature does not match: check the secret key and sign exactly the request sent"
    return None


def sigv4_headers(credentials: Credentials, service: str, method: str, url: str, body: bytes = b"", headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """`headers` plus a SigV4 signature of the request (for clients of the local servers that are not
    boto3: tests, the bench)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    (S3SigV4Auth if service == "s3" else SigV4Auth)(credentials, service, LOCAL_REGION).add_auth(request)
    return dict(request.headers.items())


def secrets_of(credentials: Credentials) -> dict[str, str]:
    return {credentials.access_key: credentials.secret_key}
