"""How the daemon reaches the broker: `mqtt.py` is the only module that imports paho."""
