"""The serving monitoring unit: `construct.py` (ServingMonitoring: alarms, topic, dashboard)."""
