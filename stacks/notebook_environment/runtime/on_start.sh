#!/bin/bash
# SageLab lifecycle configuration, on start. Placeholders in @@...@@ are filled by CDK.
# It runs as root on a notebook whose users have no root access. ec2-user owns /home/ec2-user
# (conda, the lab, the SageMaker volume that survives restarts), so root never executes, reads or
# writes anything there: a replaced interpreter or a planted symlink would hand root to ec2-user.
# 1. As ec2-user: copy the lab notebook and the step scripts from this environment's artifacts
#    bucket, write the lab's settings, and keep a copy of the idle auto-stop script.
# 2. As root: install the idle auto-stop (runtime/notebook/idle_stop.py) as a cron job that runs
#    as ec2-user. Stopping the notebook needs only the instance's role, which ec2-user has too.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 022

sudo -u ec2-user -i <<'AS_EC2_USER'
set -euo pipefail
LAB_DIR=/home/ec2-user/SageMaker/sagelab
mkdir -p "$LAB_DIR" /home/ec2-user/.sagelab
aws s3 cp --recursive --quiet "@@LAB_URI@@" "$LAB_DIR/"
cat > "$LAB_DIR/.env" <<ENV
SAGELAB_MODE=aws
SAGELAB_ENV=@@ENV_NAME@@
SAGELAB_PIPELINE=@@PIPELINE@@
SAGELAB_MODEL_GROUP=@@MODEL_GROUP@@
SAGELAB_ENDPOINT=@@ENDPOINT@@
ENV
cp "$LAB_DIR/idle_stop.py" /home/ec2-user/.sagelab/sagelab-idle-stop.py
AS_EC2_USER

# JupyterSystemEnv runs Jupyter itself, so it exists on every notebook platform and has boto3.
cat > /etc/cron.d/sagelab-idle-stop <<'CRON'
*/5 * * * * ec2-user /home/ec2-user/anaconda3/envs/JupyterSystemEnv/bin/python /home/ec2-user/.sagelab/sagelab-idle-stop.py --idle-minutes @@IDLE_MINUTES@@ >> /home/ec2-user/.sagelab/idle-stop.log 2>&1
CRON
chmod 0644 /etc/cron.d/sagelab-idle-stop
