"""Supervision: knowing whether the daemon's threads are making progress, and telling systemd."""
