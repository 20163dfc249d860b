"""The sources stage: camera, video, image, csv and mqtt inputs (registry in registry.py)."""
