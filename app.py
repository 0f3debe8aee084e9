#!/usr/bin/env python3
"""SageLab CDK app: config -> environments -> checks. The work is in stacks/app/builder.py."""

import sys

from sagelab.config import ConfigError
from stacks.app.builder import build_app

try:
    app = build_app()
except ConfigError as error:
    # One line, naming the source, field and value: what a person needs to fix it.
    print(f"sagelab config error: {error}", file=sys.stderr)
    sys.exit(1)
app.synth()
