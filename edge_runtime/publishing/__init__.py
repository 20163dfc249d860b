"""The publishing stage: results out over MQTT through transport/mqtt.py (the only paho user)."""
