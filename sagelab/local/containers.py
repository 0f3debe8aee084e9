"""The local twin of a model's serving container, chosen by the model's image (decision 0011).

    open_container(image, model_dir, environment) -> Container

    image                                         container                     speaks
    .../kmeans:1, local/sagemaker-kmeans:1        builtin_kmeans.KMeansContainer text/csv in, JSON out
    .../autogluon-inference:..., .../sagemaker-   automl.AutopilotContainer      text/csv in, text/csv out
      sklearn-automl:..., local/sagemaker-autopilot...
    anything else (XGBoost, SKLearn framework)    our inference.py               JSON in, JSON out

`sagelab serve` (the local endpoint) and the local runner's batch transform both score through
this one function, so a model answers the same way wherever it runs locally.

What a twin answers when it cannot score a request is what its real container answers, never kinder
(decision 0017): `invoke` returns (body, content type) for a 2xx and raises `ErrorAnswer` carrying the
container's own status, body and content type otherwise, with the detail the real container would
only log.
    our inference.py     the XGBoost/SKLearn images' sagemaker-containers 2.8.6.post2 transformer:
                         an exception from a handler is a 500 HTML page; a returned Response is sent as is
    built-in K-Means     400 "unable to evaluate payload provided" for a payload it cannot read
    Autopilot            500: its serving code is not public; the toolkits it can run on (sagemaker-
                         containers, sagemaker-inference) both answer a handler's exception with a 500
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tarfile
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from sagelab.local.s3_paths import S3PathError, uri_path

MODEL_DIR_IN_CONTAINER = "/opt/ml/model/"  # SageMaker extracts model.tar.gz here
ContainerType = Literal["kmeans", "autopilot", "script"]
# The last segment of an image's repository name, per container. Built-in K-Means lives in the
# region's algorithm registry as `kmeans`; Autopilot's ensembling candidates serve from
# `autogluon-inference`, its HPO candidates start with `sagemaker-sklearn-automl`.
KMEANS_REPOSITORIES = ("kmeans", "sagemaker-kmeans")
AUTOPILOT_REPOSITORY_PREFIXES = ("sagemaker-autopilot", "autogluon-inference", "sagemaker-sklearn-automl")


class Container(Protocol):
    """What SageMaker's container contract gives a caller: one request in, one answer out."""

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]: ...


class ContainerError(RuntimeError):
    """The model cannot be loaded into its container; the message says why and what to do."""


JSON = "application/json"
# sagemaker-containers' _content_types.UTF8_TYPES: the content types whose body a handler gets as text
# (exactly these strings: "application/json; charset=utf-8" arrives as bytes).
UTF8_CONTENT_TYPES = (JSON, "text/csv")
ANY_ACCEPT = "*/*"
# Werkzeug's InternalServerError page, what Flask sends for an exception a view does not handle.
INTERNAL_ERROR_PAGE = (
    b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>500 Internal Server Error</title>\n'
    b"<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. "
    b"Either the server is overloaded or there is an error in the application.</p>\n"
)
# What the built-in algorithms answer for a payload they cannot read (as InvokeEndpoint relays it:
# 'Received client error (400) from ... with message "unable to evaluate payload provided"',
# e.g. aws/sagemaker-spark#102 for K-Means, aws/amazon-sagemaker-examples#1881 for Linear Learner).
BUILTIN_UNREADABLE_PAYLOAD = b"unable to evaluate payload provided"


class ErrorAnswer(Exception):
    """A container's non-2xx answer to one invocation, as the container sends it (status, body,
    content type); `detail` is what the real container would write to its log, not to the caller."""

    def __init__(self, status: int, body: bytes, content_type: str, detail: str = "") -> None:
        super().__init__(f"the model answered {status}: {detail or body.decode('utf-8', errors='replace')}")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.detail = detail

    @classmethod
    def internal(cls, detail: str) -> ErrorAnswer:
        """Flask's answer to an exception from the model code: a 500 HTML page, the detail only in the log."""
        return cls(500, INTERNAL_ERROR_PAGE, "text/html", detail)


def repository_name(image: str) -> str:
    """`<registry>/<path>/<name>:<tag>` or `@<digest>` -> `<name>` (the last path segment)."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def container_type(image: str) -> ContainerType:
    name = repository_name(image)
    if name in KMEANS_REPOSITORIES:
        return "kmeans"
    if name.startswith(AUTOPILOT_REPOSITORY_PREFIXES):
        return "autopilot"
    return "script"


def open_container(image: str, model_dir: Path, environment: Mapping[str, str], *, s3_root: Path | None = None) -> Container:
    """The container `image` would run, serving the model extracted in `model_dir`.

    `environment` is the model's container environment (SAGEMAKER_PROGRAM, SAGEMAKER_SUBMIT_DIRECTORY
    for our scripts; Autopilot's SAGEMAKER_INFERENCE_* settings). `s3_root` (`<workdir>/s3`) is only
    needed for versions registered before the code moved into the model, whose code is a source
    archive in S3. Each container answers one request at a time, as a single-worker container does."""
    served_by = container_type(image)
    if served_by == "kmeans":
        builtin_kmeans = importlib.import_module("sagelab.local.builtin_kmeans")
        return _BuiltinContainer(builtin_kmeans.KMeansContainer(Path(model_dir)), _kmeans_refusal)
    if served_by == "autopilot":
        automl = importlib.import_module("sagelab.local.automl")
        return _BuiltinContainer(automl.AutopilotContainer(Path(model_dir), dict(environment)), ErrorAnswer.internal)
    return open_script_container(Path(model_dir), environment, s3_root=s3_root)


@dataclass
class _BuiltinContainer:
    """A built-in container's twin, one request at a time (a single-worker container). The twin's
    input errors (ValueError, with a precise message) become the real container's answer; the
    precise message goes to the log, as the real container's does."""

    inner: Container
    refusal: Callable[[str], ErrorAnswer]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        with self.lock:
            try:
                return self.inner.invoke(body, content_type, accept)
            except ValueError as error:
                raise self.refusal(str(error)) from error
            except Exception as error:
                raise ErrorAnswer.internal(f"{type(error).__name__}: {error}") from error


def _kmeans_refusal(detail: str) -> ErrorAnswer:
    return ErrorAnswer(400, BUILTIN_UNREADABLE_PAYLOAD, "text/plain", detail)


@dataclass
class ScriptContainer:
    """A framework container (XGBoost, SKLearn) running our inference.py's handlers under the
    contract of its serving toolkit, sagemaker-containers 2.8.6.post2 (aws/sagemaker-containers@
    150ff4674b268a4c6f9518aefa767892c50e1e94: src/sagemaker_containers/_worker.py Request,
    _transformer.py Transformer.transform, _functions.py error_wrapper)."""

    module: ModuleType
    model: Any
    # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT in the model's environment, else application/json (_env.ServingEnv).
    default_accept: str = JSON
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        content_type = content_type or JSON  # Request.content_type: the header, else application/json
        accept = self.default_accept if not accept or accept == ANY_ACCEPT else accept  # Request.accept
        # Request.content: werkzeug's get_data(as_text=True) decodes UTF-8 with errors="replace".
        content: bytes | str = body.decode("utf-8", errors="replace") if content_type in UTF8_CONTENT_TYPES else body
        with self.lock:
            try:
                result = self.module.output_fn(self.module.predict_fn(self.module.input_fn(content, content_type), self.model), accept)
            except Exception as error:  # error_wrapper re-raises it as ClientError; nothing handles that
                raise ErrorAnswer.internal("".join(traceback.format_exception(error)).rstrip()) from error
        return toolkit_answer(result)


def toolkit_answer(result: Any) -> tuple[bytes, str]:
    """What Transformer.transform and Flask make of output_fn's result: a (body, content type) tuple is
    a 200 (werkzeug adds "; charset=utf-8" to a text/* type); a werkzeug Response is sent with its own
    status and headers. Anything else is a 500 here: Flask 1.1 would also take a str or dict, which
    our handlers never return, so the twin is stricter, not kinder."""
    from werkzeug.utils import get_content_type
    from werkzeug.wrappers import Response

    if isinstance(result, tuple) and len(result) >= 2:
        body, mimetype = result[0], result[1]
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(body, bytes) or not isinstance(mimetype, str):
            raise ErrorAnswer.internal(f"output_fn returned ({type(body).__name__}, {type(mimetype).__name__}); expected (str or bytes, content type)")
        return body, get_content_type(mimetype, "utf-8")
    if isinstance(result, Response):
        answer = result.get_data()
        content_type = result.headers.get("Content-Type", JSON)
        if result.status_code >= 400:
            raise ErrorAnswer(result.status_code, answer, content_type, answer.decode("utf-8", errors="replace"))
        return answer, content_type
    raise ErrorAnswer.internal(f"output_fn returned a {type(result).__name__}; the toolkit sends a (body, content type) tuple or a Response")


def open_script_container(model_dir: Path, environment: Mapping[str, str], *, s3_root: Path | None = None) -> ScriptContainer:
    """As the framework container starts: find the code (SAGEMAKER_SUBMIT_DIRECTORY: a folder inside
    the model, or a source archive in S3), import SAGEMAKER_PROGRAM, call its model_fn once."""
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    program = environment.get("SAGEMAKER_PROGRAM", "inference.py")
    if submit.startswith(MODEL_DIR_IN_CONTAINER):  # the code travels inside the model (network isolation)
        code_dir = model_dir / submit.removeprefix(MODEL_DIR_IN_CONTAINER)
        if not (code_dir / program).is_file():
            raise ContainerError(f"{program} is missing from {submit} in the model at {model_dir}")
    else:
        archive = _local_s3_path(s3_root, submit)
        if archive is None or not archive.is_file():
            raise ContainerError(f"source archive {submit!r} is missing from the local S3 ({s3_root}); SAGEMAKER_SUBMIT_DIRECTORY must name the model's code")
        code_dir = Path(tempfile.mkdtemp(prefix="sagelab-code-"))
        with tarfile.open(archive) as tar:
            tar.extractall(code_dir, filter="data")
    module = import_program(code_dir / program)
    default_accept = environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or JSON
    return ScriptContainer(module=module, model=module.model_fn(str(model_dir)), default_accept=default_accept)


def _local_s3_path(s3_root: Path | None, uri: str) -> Path | None:
    if s3_root is None or not uri.startswith("s3://"):
        return None
    try:
        return uri_path(Path(s3_root), uri)
    except S3PathError:
        return None


def import_program(path: Path) -> ModuleType:
    # As the container does: the code dir first on sys.path, so inference.py's sibling imports
    # (`from preprocess import ...`) resolve to the registered code, not the working tree.
    sys.path.insert(0, str(path.parent))
    for sibling in ("preprocess", "inference"):
        sys.modules.pop(sibling, None)
    try:
        spec = importlib.util.spec_from_file_location(f"sagelab_served_{path.stem}_{uuid.uuid4().hex[:6]}", path)
        if spec is None or spec.loader is None:
            raise ContainerError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))
