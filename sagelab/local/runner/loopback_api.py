"""The loopback SageMaker API a run starts for its AutoML jobs, and what a step's boto3 needs to
reach it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sagelab.local.sagemaker_api import LocalSageMakerApi


class LoopbackApi:
    """Started on first use (an AutoML step), stopped when the run ends."""

    def __init__(self) -> None:
        self._api: LocalSageMakerApi | None = None

    def api(self) -> LocalSageMakerApi:
        if self._api is None:
            from sagelab.local.sagemaker_api import LocalSageMakerApi

            self._api = LocalSageMakerApi().start()
        return self._api

    def environment(self) -> dict[str, str]:
        """What a step's boto3 needs to reach the loopback SageMaker API (evaluate.py reads the
        AutoML leaderboard with ListCandidatesForAutoMLJob, as on AWS); nothing when none runs."""
        if self._api is None:
            return {}
        return {
            "AWS_ENDPOINT_URL_SAGEMAKER": self._api.url,
            # The loopback API's own random pair: it refuses requests signed with anything else.
            "AWS_ACCESS_KEY_ID": self._api.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self._api.credentials.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def stop(self) -> None:
        if self._api is not None:
            self._api.stop()
            self._api = None
