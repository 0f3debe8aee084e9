"""sagelab/aws_session.py: sessions of several accounts, regions and profiles, and botocore's data
parsed once per process for all of them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from botocore.exceptions import ProfileNotFound

from sagelab.aws_session import new_session, shared_loader
from tests.botocore_parses import record_parses


@pytest.fixture
def no_machine_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Nothing of the machine's AWS settings; an AWS config file of two profiles in two regions."""
    import os

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "config"
    config.write_text("[profile teacher]\nregion = eu-west-1\n[profile assistant]\nregion = ap-southeast-2\n")
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[teacher]\naws_access_key_id = TEACHER\naws_secret_access_key = t\n[assistant]\naws_access_key_id = ASSISTANT\naws_secret_access_key = a\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    return tmp_path


def test_sessions_of_two_accounts_share_the_parsed_models_and_keep_their_own_credentials_and_region(
    no_machine_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = new_session(region_name="eu-west-1", aws_access_key_id="ALICE", aws_secret_access_key="a", aws_session_token="alice-token")
    alice_sagemaker = alice.client("sagemaker")  # the process may have parsed its model already; now it has
    parsed = record_parses(monkeypatch)
    bob = new_session(region_name="us-east-2", aws_access_key_id="BOB", aws_secret_access_key="b")
    bob_sagemaker = bob.client("sagemaker")
    assert parsed == []  # no model, no endpoints.json, no partitions, no endpoint rule set parsed again
    assert (alice.get_credentials().access_key, alice.get_credentials().token) == ("ALICE", "alice-token")
    assert (bob.get_credentials().access_key, bob.get_credentials().token) == ("BOB", None)
    assert (alice_sagemaker.meta.region_name, bob_sagemaker.meta.region_name) == ("eu-west-1", "us-east-2")
    assert bob_sagemaker.meta.endpoint_url == "https://api.sagemaker.us-east-2.amazonaws.com"
    assert alice_sagemaker.meta.endpoint_url == "https://api.sagemaker.eu-west-1.amazonaws.com"


def test_each_session_keeps_its_profile_and_a_missing_profile_is_an_error_of_the_call(no_machine_settings: Path) -> None:
    teacher, assistant = new_session(profile_name="teacher"), new_session(profile_name="assistant")
    assert (teacher.region_name, teacher.get_credentials().access_key) == ("eu-west-1", "TEACHER")
    assert (assistant.region_name, assistant.get_credentials().access_key) == ("ap-southeast-2", "ASSISTANT")
    assert new_session(profile_name="teacher", region_name="us-west-2").region_name == "us-west-2"  # as boto3.Session: the argument wins
    with pytest.raises(ProfileNotFound, match="nobody"):  # at once, as boto3.Session(profile_name=...) says it
        new_session(profile_name="nobody")


def test_the_shared_loader_does_not_grow_with_the_sessions(no_machine_settings: Path) -> None:
    new_session()
    paths = list(shared_loader().search_paths)
    for _ in range(5):
        new_session().client("sts", region_name="us-east-1")
    # boto3 adds its own data folder to the loader of every new session: once, here.
    assert shared_loader().search_paths == paths and len(set(paths)) == len(paths)
    assert paths[-1].endswith("boto3/data") and any(path.endswith("botocore/data") for path in paths)


def test_threads_with_sessions_of_their_own_parse_each_document_once(no_machine_settings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The portal reads eight students side by side, each thread its own session, one loader: the
    first clients, made at the same moment, each get a complete model, parsed once."""
    # A data path of its own gives this test a loader nothing has used yet (one loader per data path).
    monkeypatch.setenv("AWS_DATA_PATH", str(no_machine_settings / "models"))
    parsed = record_parses(monkeypatch)
    start = threading.Barrier(8)
    clients: list[object] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            session = new_session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
            start.wait()
            clients.append(session.client("sagemaker"))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(clients) == 8
    assert all(hasattr(client, "create_presigned_notebook_instance_url") for client in clients)
    assert sorted(set(parsed)) == sorted(parsed), parsed  # each document once
    assert "sagemaker/2017-07-24/service-2" in parsed and "endpoints" in parsed
