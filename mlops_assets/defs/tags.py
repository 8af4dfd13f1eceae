"""Run tags the sensors set and the demo, the UI and tests read."""

TRIGGER_TAG = "mlops/trigger"  # what launched a run: degradation | canary | mlops demo
MAX_TAG = 4000  # keep run tags readable in the UI
