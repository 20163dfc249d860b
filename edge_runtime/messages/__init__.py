"""The MQTT contract in code: the topic layout and the message bodies every part agrees on.

Below pipeline/, tracking/, homeassistant/ and publishing/, which all build or send these
messages; it imports nothing else of the daemon (docs/ARCHITECTURE.md, "Layers").
"""
