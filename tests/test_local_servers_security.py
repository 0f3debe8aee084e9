"""The local servers' edges, over real sockets on 127.0.0.1: what reaches `sagelab serve`'s gateway and
endpoint and the loopback SageMaker API before a route runs (framing, Host, time, connections), who
may call them (API key, SigV4 over the body received), and what the local S3 maps to a path.

No model is trained here: `serving(require_model=False)` runs the real gateway, the real front door
handler and the real endpoint; an authorized /predict reaches the handler, which asks the endpoint
(signing with the endpoint's credentials) and answers 503 NoModelDeployed."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import select
import socket
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from sagelab.local.loopback import LOCAL_REGION, MAX_CONNECTIONS, READ_TIMEOUT_S, sigv4_headers
from sagelab.local.runner import LocalS3, PipelineError
from sagelab.local.s3_paths import S3PathError, bucket_problem, object_path
from sagelab.local.sagemaker_api import LocalSageMakerApi
from sagelab.local.serve import LocalEndpoint, LocalGateway, serving

REPO_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "local-security-key"
IAM_KEY_ID, IAM_SECRET = "AKIASECURITYTEST0001", "security-test-secret-0000000000000000000"
ROWS = json.dumps({"instances": [[0] * 64]}).encode()
BUCKET = "sagelab-dev-artifacts"
OUTSIDE_SECRET = {"secret": "outside the local S3 root"}


# -- fixtures and a raw HTTP client -----------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("servers")
    # A file the local S3 must never answer: next to the S3 root, where `/<bucket>/..` would lead.
    planted = workdir / "models" / "evaluations" / "x" / "model_description.json"
    planted.parent.mkdir(parents=True)
    planted.write_text(json.dumps(OUTSIDE_SECRET))
    (workdir / "s3" / BUCKET).mkdir(parents=True)
    return workdir


@pytest.fixture(scope="module")
def front_door(workdir: Path) -> Iterator[tuple[LocalGateway, LocalEndpoint]]:
    with serving(workdir, API_KEY, require_model=False) as pair:
        yield pair


@pytest.fixture(scope="module")
def iam_front_door(workdir: Path, front_door: Any) -> Iterator[tuple[LocalGateway, LocalEndpoint]]:
    with serving(workdir, API_KEY, require_model=False, iam_credentials={IAM_KEY_ID: IAM_SECRET}) as pair:
        yield pair


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def request_head(method: str, path: str, port: int, headers: dict[str, str] | None = None, host: str | None = None) -> bytes:
    """A request head; `host` "" sends none."""
    host = f"127.0.0.1:{port}" if host is None else host
    lines = [f"{method} {path} HTTP/1.1", *([f"Host: {host}"] if host else [])]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_response(raw: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response; ConnectionError if the server closes without one, TimeoutError if it never answers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = raw.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection without an answer (after {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = raw.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def exchange(url: str, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=timeout) as raw:
        raw.sendall(data)
        return read_response(raw)


def assert_json_refusal(status: int, body: bytes, expected: int) -> dict[str, Any]:
    assert status == expected, body
    payload: dict[str, Any] = json.loads(body)
    assert payload["message"], payload
    return payload


# -- 1. framing: Content-Length is checked before the body, and auth before a large body ----------------
@pytest.mark.parametrize("length", ["-1", "-419430400", "abc", "+5", "1_0", " ", "5, 6"])
def test_a_malformed_content_length_is_a_json_400(front_door: tuple[LocalGateway, LocalEndpoint], length: str) -> None:
    # Today's gateway read "-1" as "up to EOF" (400 MiB taken with no key: this exchange timed out)
    # and dropped the connection on "abc" or "-419430400"; each is a 400 that names the header now.
    with LocalSageMakerApi() as api:
        for url in (front_door[0].url, front_door[1].url, api.url):
            head = request_head("POST", "/predict", port_of(url), {"Content-Length": length, "x-api-key": API_KEY})
            status, headers, body = exchange(url, head)
            assert "Content-Length" in assert_json_refusal(status, body, 400)["message"]
            assert headers["connection"] == "close"


def test_two_different_content_lengths_and_chunked_bodies_are_refused(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    gateway = front_door[0]
    port = port_of(gateway.url)
    twice = request_head("POST", "/predict", port, {"x-api-key": API_KEY}).replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
    status, _, body = exchange(gateway.url, twice)
    assert_json_refusal(status, body, 400)
    chunked = request_head("POST", "/predict", port, {"x-api-key": API_KEY, "Transfer-Encoding": "chunked"})
    status, _, body = exchange(gateway.url, chunked + b"5\r\nhello\r\n0\r\n\r\n")
    assert_json_refusal(status, body, 411)


def test_a_body_over_api_gateways_10_mb_is_a_413_before_it_is_sent(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    gateway = front_door[0]
    head = request_head("POST", "/predict", port_of(gateway.url), {"Content-Length": str(400 * 1024 * 1024), "Expect": "100-continue"})
    status, _, body = exchange(gateway.url, head)  # the body is never sent: the answer comes first
    assert assert_json_refusal(status, body, 413)["error"] == "RequestEntityTooLarge"


def test_no_key_is_a_403_before_the_body_is_read(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    """A 5 MB body (under the cap) announced without a key: 403 at once, without waiting for a byte of
    it (today's gateway read the whole body first: this exchange timed out). With the key, the gateway
    waits for the body and answers after it."""
    gateway = front_door[0]
    port = port_of(gateway.url)
    for headers in ({"Content-Length": "5000000"}, {"Content-Length": "5000000", "x-api-key": "wrong"}):
        status, _, body = exchange(gateway.url, request_head("POST", "/predict", port, headers), timeout=5)
        assert assert_json_refusal(status, body, 403)["error"] == "Forbidden"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(request_head("POST", "/predict", port, {"Content-Length": str(len(ROWS)), "x-api-key": API_KEY, "Expect": "100-continue"}))
        interim, _, _ = read_response(raw)
        assert interim == 100  # invited only once the key passed
        raw.sendall(ROWS)
        status, _, body = read_response(raw)
    assert status == 503 and json.loads(body)["error"] == "NoModelDeployed", body


def test_a_404_for_a_small_body_keeps_the_connection_in_step(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    gateway = front_door[0]
    port = port_of(gateway.url)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(request_head("POST", "/nowhere", port, {"Content-Length": str(len(ROWS))}) + ROWS)
        assert read_response(raw)[0] == 404
        raw.sendall(request_head("GET", "/health", port))
        assert read_response(raw)[0] == 200


# -- 2. time and connections: stalled sockets neither last forever nor starve /health ------------------
def test_a_stalled_connection_is_closed_after_the_read_timeout(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    gateway = front_door[0]
    port = port_of(gateway.url)
    gateway.server.read_timeout = 0.2  # the claim is that a stalled read ends, not after how long
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            assert raw.recv(1024) == b""  # closed by the server (today: held until this recv timed out)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(request_head("POST", "/predict", port, {"Content-Length": "100", "x-api-key": API_KEY}) + b"{")  # 1 of 100 bytes
            assert raw.recv(1024) == b""
    finally:
        gateway.server.read_timeout = READ_TIMEOUT_S


SERVER_WITH_256_FILES = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))  # macOS's default limit
from sagelab.local.serve import serving
with serving(Path(sys.argv[1]), "k", require_model=False) as (gateway, endpoint):
    print(gateway.url, flush=True)
    sys.stdin.read()
"""


def test_hundreds_of_stalled_sockets_do_not_starve_health(tmp_path: Path) -> None:
    """A server process limited to 256 open files (macOS's default), 300 sockets that send half a
    request and stall: GET /health still answers (today's server ran out of files and never accepted
    it). The oldest stalled connection is closed for each new one beyond MAX_CONNECTIONS."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_WITH_256_FILES, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    stalled: list[socket.socket] = []
    try:
        assert server.stdout is not None
        assert select.select([server.stdout], [], [], 120)[0], "the server did not start"
        url = server.stdout.readline().strip()
        port = port_of(url)
        for _ in range(300):
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=2)
                raw.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except OSError:
                break  # today's server stops accepting; /health below then shows it
            stalled.append(raw)
        assert len(stalled) > MAX_CONNECTIONS
        status, _, body = exchange(url, request_head("GET", "/health", port), timeout=15)
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        for raw in stalled:
            raw.close()
        server.kill()
        server.wait(timeout=30)


# -- 3. bind, Host, and a key for the endpoint ---------------------------------------------------------
def test_servers_listen_on_loopback_only(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    with LocalSageMakerApi() as api:
        addresses = {server.server_address[0] for server in (front_door[0].server, front_door[1].server, api._server) if server is not None}
    assert addresses == {"127.0.0.1"}


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:{port}", "127.0.0.1.nip.io:{port}", "127.0.0.1:1", ""])
def test_a_foreign_host_is_refused_by_every_local_server(front_door: tuple[LocalGateway, LocalEndpoint], host: str) -> None:
    """DNS rebinding: a web page whose name now resolves to 127.0.0.1 sends its own name as Host."""
    with LocalSageMakerApi() as api:
        for url, path in ((front_door[0].url, "/health"), (front_door[1].url, "/ping"), (api.url, "/")):
            port = port_of(url)
            status, _, body = exchange(url, request_head("GET", path, port, host=host.format(port=port)))
            assert status == (400 if host == "" else 421), (url, body)
            assert json.loads(body)["message"]


def test_loopback_names_are_answered(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    gateway = front_door[0]
    port = port_of(gateway.url)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", "127.0.0.1"):
        assert exchange(gateway.url, request_head("GET", "/health", port, host=host))[0] == 200, host


def runtime_client(url: str, credentials: Credentials) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name=LOCAL_REGION,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        config=Config(retries={"max_attempts": 1}),
    )


def test_the_endpoint_answers_only_requests_signed_with_its_credentials(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    gateway, endpoint = front_door
    port = port_of(endpoint.url)
    for method, path in (
        ("GET", "/ping"),
        ("POST", "/invocations"),
        ("POST", "/endpoints/x/invocations"),
        ("GET", f"/{BUCKET}/models/evaluations/x/model_description.json"),
    ):
        status, _, body = exchange(endpoint.url, request_head(method, path, port, {"Content-Length": "0"}))
        assert status == 403, (method, path, body)
    stranger = Credentials("AKIASTRANGER00000001", "not-the-endpoint-secret")
    with pytest.raises(ClientError) as refused:
        runtime_client(endpoint.url, stranger).invoke_endpoint(EndpointName="x", ContentType="application/json", Body=ROWS)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # Signed with the endpoint's credentials: past the signature, to the Runtime API's own answer.
    with pytest.raises(ClientError) as missing:
        runtime_client(endpoint.url, endpoint.credentials).invoke_endpoint(EndpointName="x", ContentType="application/json", Body=ROWS)
    assert missing.value.response["Error"]["Code"] == "ValidationError" and "not found" in missing.value.response["Error"]["Message"]
    # The gateway's handler signs with them too: its call reaches the endpoint (503: no model yet).
    status, _, body = exchange(
        gateway.url, request_head("POST", "/predict", port_of(gateway.url), {"Content-Length": str(len(ROWS)), "x-api-key": API_KEY}) + ROWS
    )
    assert status == 503 and json.loads(body)["error"] == "NoModelDeployed", body


def test_the_loopback_sagemaker_api_answers_only_its_own_signature() -> None:
    with LocalSageMakerApi() as api:
        stranger = boto3.client("sagemaker", endpoint_url=api.url, region_name=LOCAL_REGION, aws_access_key_id="local", aws_secret_access_key="local")
        with pytest.raises(ClientError) as refused:
            stranger.describe_auto_ml_job(AutoMLJobName="none")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        own = boto3.client(
            "sagemaker",
            endpoint_url=api.url,
            region_name=LOCAL_REGION,
            aws_access_key_id=api.credentials.access_key,
            aws_secret_access_key=api.credentials.secret_key,
        )
        with pytest.raises(ClientError) as missing:
            own.describe_auto_ml_job(AutoMLJobName="none")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFound"


# -- 4. SigV4 over the body received ----------------------------------------------------------------
def tampered_requests(url: str, credentials: Credentials, service: str) -> list[tuple[str, dict[str, str], bytes]]:
    other = json.dumps({"instances": [[9] * 64]}).encode()
    signed_claim = sigv4_headers(
        credentials, service, "POST", url, ROWS, {"Content-Type": "application/json", "X-Amz-Content-SHA256": hashlib.sha256(ROWS).hexdigest()}
    )
    unsigned = sigv4_headers(credentials, service, "POST", url, b"", {"Content-Type": "application/json", "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    return [
        ("the same signature (with the claimed hash), another body", signed_claim, other),
        ("UNSIGNED-PAYLOAD", unsigned, other),
    ]


def send(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/" + url.split("/", 3)[3], body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_gateways_sigv4_hashes_the_body_itself(iam_front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    url = f"{iam_front_door[0].url}/predict"
    credentials = Credentials(IAM_KEY_ID, IAM_SECRET)
    for title, headers, body in tampered_requests(url, credentials, "execute-api"):
        status, answer = send(url, headers, body)
        assert status == 403 and json.loads(answer)["error"] == "Forbidden", (title, answer)
    status, answer = send(url, sigv4_headers(credentials, "execute-api", "POST", url, ROWS, {"Content-Type": "application/json"}), ROWS)
    assert status == 503 and json.loads(answer)["error"] == "NoModelDeployed", answer  # signed right: through to the handler


def test_the_endpoints_sigv4_hashes_the_body_itself(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    endpoint = front_door[1]
    url = f"{endpoint.url}/endpoints/x/invocations"
    for title, headers, body in tampered_requests(url, endpoint.credentials, "sagemaker"):
        status, answer = send(url, headers, body)
        assert status == 403, (title, answer)
    status, answer = send(url, sigv4_headers(endpoint.credentials, "sagemaker", "POST", url, ROWS, {"Content-Type": "application/json"}), ROWS)
    assert status == 400 and "not found" in json.loads(answer)["message"], answer


# -- 5. the API key: compared in constant time, never on the command line ----------------------------------
def test_a_key_with_bytes_outside_ascii_is_a_403_not_a_dropped_connection(front_door: tuple[LocalGateway, LocalEndpoint]) -> None:
    # hmac.compare_digest refuses str outside ASCII; the gateway compares bytes.
    gateway = front_door[0]
    head = request_head("POST", "/predict", port_of(gateway.url), {"Content-Length": str(len(ROWS))}).replace(b"\r\n\r\n", b"\r\nx-api-key: cl\xe9\r\n\r\n")
    status, _, body = exchange(gateway.url, head + ROWS)
    assert_json_refusal(status, body, 403)


def test_the_cli_refuses_a_key_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sagelab.cli import main

    rows = tmp_path / "rows.json"
    rows.write_text(ROWS.decode())
    for argv in (["serve", "--workdir", str(tmp_path), "--api-key", "k"], ["predict", "--url", "http://127.0.0.1:9", "--api-key", "k", "--file", str(rows)]):
        assert main(argv) == 2, argv
        assert "--api-key-file" in capsys.readouterr().err


def test_predict_reads_the_key_from_a_file_or_the_environment(
    front_door: tuple[LocalGateway, LocalEndpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sagelab.cli import main

    rows, key_file = tmp_path / "rows.json", tmp_path / "key"
    rows.write_text(ROWS.decode())
    key_file.write_text(API_KEY + "\n")
    monkeypatch.delenv("SAGELAB_API_KEY", raising=False)
    # 503 NoModelDeployed (exit 1): the key passed the gateway; a missing key is a 403.
    assert main(["predict", "--url", front_door[0].url, "--api-key-file", str(key_file), "--file", str(rows)]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    monkeypatch.setenv("SAGELAB_API_KEY", API_KEY)
    assert main(["predict", "--url", front_door[0].url, "--file", str(rows)]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    monkeypatch.delenv("SAGELAB_API_KEY")
    assert main(["predict", "--url", front_door[0].url, "--file", str(rows)]) == 1
    assert "HTTP 403" in capsys.readouterr().err


def test_serve_keeps_a_random_key_in_a_file_only_its_user_can_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sagelab.api_key import key_for_server

    monkeypatch.delenv("SAGELAB_API_KEY", raising=False)
    key, path = key_for_server(None, tmp_path / "work")
    assert path == tmp_path / "work" / "api-key" and path.read_text().strip() == key and len(key) > 30
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_for_server(None, tmp_path / "work") == (key, path)  # the next serve reuses it
    monkeypatch.setenv("SAGELAB_API_KEY", "from-the-environment")
    assert key_for_server(None, tmp_path / "work") == ("from-the-environment", None)


# -- 6. the local S3 stays inside its root -------------------------------------------------------------
def get_signed(endpoint: LocalEndpoint, path: str) -> tuple[int, bytes]:
    """GET exactly `path` (http.client sends it as given; httpx would remove the dot segments)."""
    headers = sigv4_headers(endpoint.credentials, "s3", "GET", f"{endpoint.url}{path}", b"", {"X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest()})
    connection = http.client.HTTPConnection("127.0.0.1", port_of(endpoint.url), timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/../models/evaluations/x/model_description.json",
        "/..%2Fmodels/evaluations/x/model_description.json",
        "/./../models/evaluations/x/model_description.json",
        f"/{BUCKET}/models/evaluations/../../../models/evaluations/x/model_description.json",
    ],
)
def test_a_crafted_bucket_or_key_reads_nothing_outside_the_local_s3(front_door: tuple[LocalGateway, LocalEndpoint], path: str) -> None:
    status, body = get_signed(front_door[1], path)
    assert status in (400, 403) and b"<Error>" in body, (status, body)
    assert OUTSIDE_SECRET["secret"].encode() not in body


def test_the_local_s3_still_answers_a_model_description(front_door: tuple[LocalGateway, LocalEndpoint], workdir: Path) -> None:
    description = workdir / "s3" / BUCKET / "models" / "evaluations" / "run-1" / "model_description.json"
    description.parent.mkdir(parents=True, exist_ok=True)
    description.write_text('{"ok": true}')
    assert get_signed(front_door[1], f"/{BUCKET}/models/evaluations/run-1/model_description.json") == (200, b'{"ok": true}')


@pytest.mark.parametrize(
    "uri",
    ["s3://../models/x", "s3://./x", "s3://" + BUCKET + "//etc/passwd", "s3://" + BUCKET + "/a/../../x", "s3:///etc/passwd", "s3://Bucket/x", "s3://ab/x"],
)
def test_the_runners_local_s3_refuses_paths_that_leave_its_root(tmp_path: Path, uri: str) -> None:
    with pytest.raises(PipelineError):
        LocalS3(tmp_path / "s3").path(uri)


def test_a_symlink_inside_a_bucket_does_not_lead_out(tmp_path: Path) -> None:
    root = tmp_path / "s3"
    (root / BUCKET).mkdir(parents=True)
    (root / BUCKET / "link").symlink_to(tmp_path)
    with pytest.raises(S3PathError, match="resolves outside"):
        object_path(root, BUCKET, "link/secret.json")
    assert object_path(root, BUCKET, "data/train.csv") == root / BUCKET / "data" / "train.csv"


@pytest.mark.parametrize("bucket", ["sagelab-dev-artifacts", "sagelab-ml-prod-data", "a.b-c", "abc"])
def test_s3_bucket_names_are_accepted(bucket: str) -> None:
    assert bucket_problem(bucket) is None


@pytest.mark.parametrize("bucket", ["..", ".", "ab", "a" * 64, "Upper", "a..b", "-ab", "ab-", "192.168.5.4", "xn--ab", "ab-s3alias", "a_b", "a/b"])
def test_non_s3_bucket_names_are_refused(bucket: str) -> None:
    assert bucket_problem(bucket)


# -- evaluate.py's extraction on a Python without extraction filters -----------------------------------
def crafted_archive(folder: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return archive


def member(name: str, member_type: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = member_type, linkname, 0o644
    return info


@pytest.mark.parametrize(
    ("members", "refusal"),
    [
        ([(member("/tmp/sagelab-escape.txt"), b"x")], "absolute"),
        ([(member("../escape.txt"), b"x")], "'..'"),
        ([(member("sub/../../escape.txt"), b"x")], "'..'"),
        ([(member("out", tarfile.SYMTYPE, "/etc"), None)], "absolute"),
        ([(member("out", tarfile.SYMTYPE, "../../.."), None)], "'..'"),
        ([(member("sub", tarfile.DIRTYPE), None), (member("in", tarfile.SYMTYPE, "sub"), None), (member("in/x.txt"), b"x")], "through a link"),
        ([(member("hard", tarfile.LNKTYPE, "../outside"), None)], "'..'"),
        ([(member("null", tarfile.CHRTYPE), None)], "device"),
        ([(member("fifo", tarfile.FIFOTYPE), None)], "device"),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "symlink-absolute", "symlink-up", "through-link", "hardlink-up", "char-device", "fifo"],
)
def test_evaluate_refuses_unsafe_members_without_extraction_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: list[tuple[tarfile.TarInfo, bytes | None]], refusal: str
) -> None:
    from pipeline_steps import evaluate

    monkeypatch.delattr(tarfile, "data_filter")  # a Python before 3.10.12 / 3.11.4
    archive = crafted_archive(tmp_path / "model", *members)
    scratch = tmp_path / "deep" / "er" / "scratch"
    scratch.mkdir(parents=True)
    with pytest.raises(ValueError, match=refusal) as refused:
        evaluate.load_model_dir(archive.parent, scratch)
    assert members[-1][0].name in str(refused.value)
    assert not (tmp_path / "deep" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert list(scratch.iterdir()) == []


def test_evaluate_extracts_a_model_archive_without_extraction_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_steps import evaluate

    monkeypatch.delattr(tarfile, "data_filter")
    setuid = member("model.json")
    setuid.mode = 0o4777
    archive = crafted_archive(
        tmp_path / "model",
        (member("code", tarfile.DIRTYPE), None),
        (setuid, b"{}"),
        (member("code/inference.py"), b"print('hi')\n"),
        (member("latest.json", tarfile.SYMTYPE, "model.json"), None),
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert evaluate.load_model_dir(archive.parent, scratch) == scratch
    assert (scratch / "latest.json").read_text() == "{}" and (scratch / "code" / "inference.py").is_file()
    assert stat.S_IMODE((scratch / "model.json").stat().st_mode) == 0o755
