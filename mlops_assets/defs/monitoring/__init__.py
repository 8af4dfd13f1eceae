"""Monitoring: one asset and check per monitor of the registry and per model, and the sensor that
retrains when they degrade."""
