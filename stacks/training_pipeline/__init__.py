"""The training pipeline unit: `construct.py` (TrainingPipeline: pipeline, model package group, code, dataset)."""
