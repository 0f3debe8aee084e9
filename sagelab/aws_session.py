"""Every boto3 session SageLab makes: its own credentials, region and profile, and botocore's data
(service models, endpoints.json, partitions, endpoint rule sets) parsed once per process.

Why: `boto3.Session()` gives each new session a new botocore `Loader`, so the session's first
client of a service parses that service's JSON model again, and endpoints.json and the partitions
with it. sagemaker's model is 2.6 MB of JSON, endpoints.json 1.25 MB: a new session and its first
sagemaker client cost ~0.27 s of CPU, most of it parsing and listing botocore's ~420 service
folders (measured on this project's 2-core machine, 2026-12-06: 20 sessions x a sagemaker client,
5.2-5.4 s of CPU; with one loader, 0.7-0.9 s). SageLab makes a session per student account
and region (`sagelab class report`, the class-end and spending-cap commands), per pipeline definition
build, per `sagelab serve`, and the portal and spending-cap Lambdas one per student per invocation.

botocore looks its loader up as the session's `data_loader` component, and every parsed document
is cached on the loader (`instance_cache`): the endpoint resolver (`endpoints`), the client's
partitions and endpoint rule set and the service model all come through it, so a session whose
`data_loader` is the shared one parses none of them again. Credentials, region, profile, config,
event handlers and clients stay the session's own.

Lambda functions that make sessions ship this module (stacks/student_portal/construct.py,
stacks/spend_cap/construct.py); it needs only boto3.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
import botocore.session
from botocore.loaders import Loader

_lock = threading.Lock()
_loaders: dict[str | None, Loader] = {}


class _SearchPaths(list[str]):
    """boto3 appends its own data folder to the loader's search paths for every new session
    (`boto3.Session._setup_loader`); with one loader the list would grow by one path per session.
    A path already there is not added again, so the order is the one a new session's loader has."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


class _SharedLoader(Loader):
    """A loader several threads' sessions use at once (the portal reads students side by side, each
    thread with its own session): a document is parsed and completed with its extras under a lock,
    so no thread reads a model another is still completing, and none is parsed twice."""

    def __init__(self, search_paths: list[str]) -> None:
        super().__init__(extra_search_paths=_SearchPaths(search_paths))
        self._loading = threading.RLock()

    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        with self._loading:
            return super().load_service_model(service_name, type_name, api_version)

    def load_data_with_path(self, name: str) -> Any:
        with self._loading:
            return super().load_data_with_path(name)


def shared_loader(data_path: str | None = None) -> Loader:
    """The process's loader for botocore's `data_path` setting (AWS_DATA_PATH; unset in practice, so
    one loader per process), made as botocore's `create_loader` makes a session's own."""
    with _lock:
        if data_path not in _loaders:
            extra = [os.path.expanduser(os.path.expandvars(path)) for path in data_path.split(os.pathsep)] if data_path else []
            _loaders[data_path] = _SharedLoader(extra)
        return _loaders[data_path]


def new_session(
    *,
    region_name: str | None = None,
    profile_name: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
) -> boto3.Session:
    """A new `boto3.Session` with these settings (None: the usual chain, as boto3.Session), on the
    process's shared loader."""
    core = botocore.session.get_session()
    if profile_name is not None:
        core.set_config_variable("profile", profile_name)
    # What botocore reads to make a session's own loader; read here, a missing profile is still an
    # error of this call (ProfileNotFound), as with boto3.Session(profile_name=...).
    core.register_component("data_loader", shared_loader(core.get_config_variable("data_path")))
    return boto3.Session(
        region_name=region_name,
        profile_name=profile_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        botocore_session=core,
    )
