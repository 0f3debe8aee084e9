"""NotebookEnvironment: the student's SageMaker notebook instance, its lab and idle auto-stop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from aws_cdk import Fn
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from sagelab.naming import ResourceNames
from stacks.app.nag import acknowledge

ON_START_SCRIPT = Path(__file__).resolve().parent / "runtime" / "on_start.sh"
LIFECYCLE_SCRIPT_LIMIT = 16384  # SageMaker's limit on each base64-encoded lifecycle script


class NotebookSettings(Protocol):
    """What the notebook reads of an environment's notebook settings (the config's `notebook` section
    has these; the construct does not depend on the config module)."""

    @property
    def instance_type(self) -> str: ...

    @property
    def volume_size_gb(self) -> int: ...

    @property
    def idle_timeout_minutes(self) -> int: ...

    @property
    def direct_internet_access(self) -> bool: ...

    @property
    def subnet_id(self) -> str | None: ...

    @property
    def security_group_ids(self) -> Sequence[str]: ...


class NotebookEnvironment(Construct):
    """A notebook instance (KMS-encrypted volume, root access off, IMDSv2 only) whose lifecycle
    configuration, at every start, copies the lab (notebook, step scripts, the sagelab package)
    from the environment's artifacts bucket as ec2-user and installs the idle auto-stop cron job,
    which runs as ec2-user: root never runs anything ec2-user can replace (on_start.sh says how). Nothing is downloaded
    from the internet at boot, so it works with direct internet access disabled (given an S3
    endpoint in the VPC).

    Props:
        names: the notebook, pipeline, group and endpoint names the lab uses.
        notebook: instance type, volume, idle minutes, internet access and VPC placement.
        role: the notebook's execution role (scoped by ExecutionRoles).
        key: encrypts the notebook's volume.
        lab_bucket / lab_prefix: where the code deployment put the lab (`.../lab/`).
        env_name: written into the lab's settings so the notebook finds its environment.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        notebook: NotebookSettings,
        role: iam.IRole,
        key: kms.IKey,
        lab_bucket: s3.IBucket,
        lab_prefix: str,
        env_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        if notebook.subnet_id is None and not notebook.direct_internet_access:
            raise ValueError("a notebook without direct internet access needs subnet_id (a VPC)")
        template = ON_START_SCRIPT.read_text()
        values = {
            "@@LAB_URI@@": f"s3://{lab_bucket.bucket_name}/{lab_prefix}",
            "@@ENV_NAME@@": env_name,
            "@@PIPELINE@@": names.pipeline,
            "@@MODEL_GROUP@@": names.model_package_group,
            "@@ENDPOINT@@": names.endpoint,
            "@@IDLE_MINUTES@@": str(notebook.idle_timeout_minutes),
        }
        script = template
        for marker, value in values.items():
            script = script.replace(marker, value)
        if len(script) * 4 // 3 > LIFECYCLE_SCRIPT_LIMIT:
            raise ValueError(f"{ON_START_SCRIPT.name} is over SageMaker's {LIFECYCLE_SCRIPT_LIMIT}-byte lifecycle script limit")
        self.lifecycle = sagemaker.CfnNotebookInstanceLifecycleConfig(
            self,
            "Lifecycle",
            notebook_instance_lifecycle_config_name=f"{names.notebook}-lab",
            on_start=[sagemaker.CfnNotebookInstanceLifecycleConfig.NotebookInstanceLifecycleHookProperty(content=Fn.base64(script))],
        )
        self.instance = sagemaker.CfnNotebookInstance(
            self,
            "Instance",
            notebook_instance_name=names.notebook,
            instance_type=notebook.instance_type,
            volume_size_in_gb=notebook.volume_size_gb,
            role_arn=role.role_arn,
            kms_key_id=key.key_id,
            root_access="Disabled",
            direct_internet_access="Enabled" if notebook.direct_internet_access else "Disabled",
            subnet_id=notebook.subnet_id,
            security_group_ids=list(notebook.security_group_ids) or None,
            lifecycle_config_name=self.lifecycle.attr_notebook_instance_lifecycle_config_name,
            platform_identifier="notebook-al2-v3",
            # IMDSv2 only: a request forged through a notebook (SSRF) cannot read the role's credentials.
            instance_metadata_service_configuration=sagemaker.CfnNotebookInstance.InstanceMetadataServiceConfigurationProperty(
                minimum_instance_metadata_service_version="2"
            ),
        )
        if notebook.subnet_id is None:
            why = "The lab default is a notebook with direct internet access and no VPC (pip, datasets); set notebook.subnet_id and direct_internet_access: false to place it in a VPC."
            acknowledge(
                self.instance,
                ("AwsSolutions-SM1", why),
                ("AwsSolutions-SM3", why),
                ("NIST.800.53.R5-SageMakerNotebookInVPC", why),
                ("NIST.800.53.R5-SageMakerNotebookNoDirectInternetAccess", why),
            )
        self.url = f"https://{names.notebook}.notebook.{Fn.ref('AWS::Region')}.sagemaker.aws/lab/tree/sagelab/sagemaker_lab.ipynb"
