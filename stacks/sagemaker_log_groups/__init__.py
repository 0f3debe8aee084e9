"""The SageMaker log groups unit: `construct.py` (SageMakerLogGroups and the key grant for CloudWatch Logs)."""
