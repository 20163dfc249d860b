"""The publishing stage: results out over MQTT (the rest of the daemon never sees paho)."""
