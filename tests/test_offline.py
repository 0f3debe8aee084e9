"""Synthesis and the definition build are pure: no network, no AWS credentials."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from sagelab import pipeline_definition
from sagelab.pipeline_definition import PipelineSettings, TuningSettings
from tests.botocore_parses import record_parses
from tests.conftest import GuardedSynth


def test_synth_needs_no_network_and_no_credentials(guarded_synth: GuardedSynth) -> None:
    """The session's default synth (conftest's GUARDED_SYNTH, which every template test reads) ran
    without AWS credentials, in a network namespace with no interfaces when the machine allows it
    (nothing can leave, Node included), and its Python socket guard counted no attempt."""
    assert guarded_synth.returncode == 0, guarded_synth.stderr[-3000:]
    assert "SOCKET_ATTEMPTS 0" in guarded_synth.stdout
    assert (guarded_synth.outdir / "sagelab-dev--platform.template.json").exists()


def test_definition_build_opens_no_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object, *args: object) -> None:
        attempts.append(address)
        raise OSError(f"network access while building the definition: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for settings in (PipelineSettings(), PipelineSettings(tuning=TuningSettings(max_jobs=3))):
        definition = json.loads(pipeline_definition.build_definition_text(settings))  # no cache: a real SDK build
        assert definition["Steps"]
    assert attempts == []
    assert "AWS_EC2_METADATA_DISABLED" not in os.environ  # the guard is scoped to the build


def test_definition_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    first = pipeline_definition.build_definition_text(PipelineSettings(tuning=TuningSettings(max_jobs=2)))
    parsed = record_parses(monkeypatch)
    second = pipeline_definition.build_definition_text(PipelineSettings(tuning=TuningSettings(max_jobs=2)))
    assert first == second
    # Each build's SDK session makes five clients and an S3 resource (sagemaker's model alone is 2.6 MB
    # of JSON): on the process's shared loader (sagelab/aws_session.py) the second parses none again.
    assert parsed == []
    assert "us-east-1" not in first and "sagemaker_job_name" not in first
    assert json.loads(first)["Version"] == "2020-12-01"


def test_disk_cache_is_keyed_on_settings_and_reused(tmp_path: Path) -> None:
    settings = PipelineSettings(metric_threshold=0.91)
    first = pipeline_definition.definition_json(settings, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("definition-*.json")
    assert cached.read_text() == first
    pipeline_definition._definition_text.cache_clear()
    cached.write_text(first.replace("0.91", "0.92"))  # proves the second call reads the file
    assert "0.92" in pipeline_definition.definition_json(settings, cache_dir=tmp_path)
    pipeline_definition.definition_json(PipelineSettings(metric_threshold=0.93), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("definition-*.json"))) == 2


def test_only_our_constant_config_skips_the_sdks_repeated_validation() -> None:
    """The build skips the SDK's re-validation of our own defaults config (a constant, checked once per
    process); any other config is still validated, and the SDK's functions are back afterwards."""
    import jsonschema
    import sagemaker.session as sdk_session
    import sagemaker.utils as sdk_utils

    originals = (sdk_session.validate_sagemaker_config, sdk_utils.validate_sagemaker_config)
    with pipeline_definition._config_validated_once():
        for module in (sdk_session, sdk_utils):
            module.validate_sagemaker_config(pipeline_definition._SDK_CONFIG)
            with pytest.raises(jsonschema.ValidationError):
                module.validate_sagemaker_config({"SchemaVersion": "not-a-version"})
    assert (sdk_session.validate_sagemaker_config, sdk_utils.validate_sagemaker_config) == originals
