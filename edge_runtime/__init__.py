"""edge-runtime: run TFLite models on an edge device and publish the results over MQTT."""

__version__ = "0.1.0"
