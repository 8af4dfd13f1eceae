"""Run tags the sensors set and the demo, the UI and tests read."""

TRIGGER_TAG = "mlops/trigger"  # what launched a run: degradation | canary | mlops demo
MAX_TAG = 4000  # keep run tags readable in the UI

# The daemon evaluates sensors on a 5 s loop; a minimum interval of exactly 5 s lets a tick that
# starts a moment early skip a loop (10 s between evaluations), so the sensors ask for less and
# run on every loop.
SENSOR_INTERVAL_S = 2
