"""Home Assistant: MQTT discovery, retained entity states, snapshots and control."""
