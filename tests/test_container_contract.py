"""The framework-container twin runs a model's handlers under the serving toolkit's contract
(sagemaker-containers 2.8.6.post2, decision 0017), never kinder: what each handler receives, what an
exception becomes, what a returned Response or tuple becomes. The parity lane checks the same against
the toolkit itself (tests/test_container_parity.py); these run everywhere, in milliseconds.

The program under test is a real inference script written to a model's code folder and loaded by
`open_script_container`, as the container loads SAGEMAKER_PROGRAM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagelab.local.containers import INTERNAL_ERROR_PAGE, ErrorAnswer, ScriptContainer, open_script_container

PROGRAM = """
import json


def model_fn(model_dir):
    return "model"


def input_fn(body, content_type):
    if body in ("raise", b"raise"):
        raise ValueError("a user error the toolkit does not see as one")
    return {"body_type": type(body).__name__, "body": body if isinstance(body, str) else body.decode("latin-1"), "content_type": content_type}


def predict_fn(data, model):
    return data


def output_fn(prediction, accept):
    if prediction["body"] == "refuse":
        from werkzeug.wrappers import Response

        return Response(response=json.dumps({"message": "no"}), status=422, mimetype="application/json")
    if prediction["body"] == "string":
        return "a bare string"
    return json.dumps({**prediction, "accept": accept}), accept
"""


def container(tmp_path: Path, environment: dict[str, str] | None = None) -> ScriptContainer:
    code = tmp_path / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "probe.py").write_text(PROGRAM)
    env = {"SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code", "SAGEMAKER_PROGRAM": "probe.py", **(environment or {})}
    return open_script_container(tmp_path / "model", env)


def seen(answer: tuple[bytes, str]) -> dict[str, str]:
    return dict(json.loads(answer[0]))


def test_a_handlers_exception_is_the_toolkits_500_page_not_its_message(tmp_path: Path) -> None:
    with pytest.raises(ErrorAnswer) as refused:
        container(tmp_path).invoke(b"raise", "application/json", "application/json")
    assert (refused.value.status, refused.value.content_type, refused.value.body) == (500, "text/html", INTERNAL_ERROR_PAGE)
    assert b"user error" not in refused.value.body and "ValueError: a user error" in refused.value.detail  # the log's


def test_a_returned_response_is_sent_with_its_own_status_and_body(tmp_path: Path) -> None:
    with pytest.raises(ErrorAnswer) as refused:
        container(tmp_path).invoke(b"refuse", "application/json", "application/json")
    assert (refused.value.status, refused.value.content_type, json.loads(refused.value.body)) == (422, "application/json", {"message": "no"})


def test_anything_but_a_tuple_or_a_response_is_a_500(tmp_path: Path) -> None:
    with pytest.raises(ErrorAnswer) as refused:
        container(tmp_path).invoke(b"string", "application/json", "application/json")
    assert refused.value.status == 500 and "returned a str" in refused.value.detail


@pytest.mark.parametrize(
    ("content_type", "body_type", "body"),
    [
        ("application/json", "str", "caf\ufffd"),  # text, undecodable bytes replaced as werkzeug does
        ("text/csv", "str", "caf\ufffd"),
        ("application/json; charset=utf-8", "bytes", "caf\xe9"),  # not exactly a UTF-8 type: bytes
        ("application/x-npy", "bytes", "caf\xe9"),
        ("", "str", "caf\ufffd"),  # no Content-Type: application/json
    ],
)
def test_the_body_is_text_for_exactly_json_and_csv(tmp_path: Path, content_type: str, body_type: str, body: str) -> None:
    got = seen(container(tmp_path).invoke(b"caf\xe9", content_type, "application/json"))
    assert (got["body_type"], got["body"], got["content_type"]) == (body_type, body, content_type or "application/json")


def test_a_missing_or_any_accept_is_the_default_accept(tmp_path: Path) -> None:
    plain = container(tmp_path / "plain")
    assert seen(plain.invoke(b"x", "text/csv", ""))["accept"] == seen(plain.invoke(b"x", "text/csv", "*/*"))["accept"] == "application/json"
    chosen = container(tmp_path / "chosen", {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    answer, content_type = chosen.invoke(b"x", "text/csv", "*/*")
    assert json.loads(answer)["accept"] == "text/csv" and content_type == "text/csv; charset=utf-8"  # werkzeug's charset for text/*
