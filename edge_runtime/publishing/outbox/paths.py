"""Where the outbox file lives when the config does not say."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def default_outbox_path(config_file: str | Path, environ: dict[str, str] | None = None) -> Path:
    """$STATE_DIRECTORY/outbox.sqlite under systemd (StateDirectory=), else next to the config file.

    Next to the config keeps one outbox per config (its seq counters belong to that config's
    pipelines), and a test's or a user's second config never shares a file with the first.
    """
    environ = os.environ if environ is None else environ
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "outbox.sqlite"
    config = Path(config_file).resolve()
    return config.with_name(f"{config.stem}.outbox.sqlite")


def configured_outbox_path(app: Any) -> Path:
    """The outbox file of a config (AppConfig): its own setting, else the default above."""
    return app.outbox.path or default_outbox_path(app.file)
