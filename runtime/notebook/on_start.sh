#!/bin/bash
# SageLab lifecycle configuration, on start. Placeholders in @@...@@ are filled by CDK.
# 1. Copy the lab notebook and the step scripts from this environment's artifacts bucket.
# 2. Install the idle auto-stop (runtime/notebook/idle_stop.py) as a cron job.
set -euo pipefail
LAB_DIR=/home/ec2-user/SageMaker/sagelab
mkdir -p "$LAB_DIR"
aws s3 cp --recursive --quiet "@@LAB_URI@@" "$LAB_DIR/"
chown -R ec2-user:ec2-user "$LAB_DIR"
cat > /home/ec2-user/SageMaker/sagelab/.env <<ENV
SAGELAB_MODE=aws
SAGELAB_ENV=@@ENV_NAME@@
SAGELAB_PIPELINE=@@PIPELINE@@
SAGELAB_MODEL_GROUP=@@MODEL_GROUP@@
SAGELAB_ENDPOINT=@@ENDPOINT@@
ENV
cp "$LAB_DIR/idle_stop.py" /home/ec2-user/sagelab-idle-stop.py
PYTHON=/home/ec2-user/anaconda3/bin/python
[ -x "$PYTHON" ] || PYTHON=/usr/bin/python3
echo "*/5 * * * * root $PYTHON /home/ec2-user/sagelab-idle-stop.py --idle-minutes @@IDLE_MINUTES@@ >> /var/log/sagelab-idle-stop.log 2>&1" > /etc/cron.d/sagelab-idle-stop
