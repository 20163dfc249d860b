"""Names with a trailing newline or any control character are config errors (issue 12, scenario 6).

`^...$` matched "door\\n" (`$` matches before a final newline), so `check` accepted it and at run
time the broker closed the connection on every publish. `edge-runtime check` on a real file must
fail with exit 2 and name the key.
"""

from __future__ import annotations

import pytest

from conftest import digits_pipeline, edge_runtime, write_config

from edge_runtime.app_config import load_config
from edge_runtime.config.typed import ConfigError


@pytest.mark.parametrize("where, key", [
    ("name", "pipelines[0].name"),
    ("device", "device.id"),
    ("prefix", "mqtt.topic_prefix"),
    ("prefix-level", "mqtt.topic_prefix"),
    ("host", "mqtt.host"),
    ("client_id", "mqtt.client_id"),
    ("topic", "pipelines[0].source.topic"),
])
@pytest.mark.parametrize("bad", ["\n", "\r", "\t", "\x00", "\x7f", "\x85"])
def test_control_characters_are_config_errors_naming_the_key(tmp_path, where, key, bad):
    config = _config(tmp_path, where, bad)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.key == key


@pytest.mark.parametrize("where, key", [("name", "pipelines[0].name"), ("device", "device.id"),
                                        ("prefix", "mqtt.topic_prefix")])
def test_check_refuses_a_trailing_newline(tmp_path, where, key):
    """The issue's three cases through the real CLI: exit 2, the key named."""
    done = edge_runtime("check", "--config", str(_config(tmp_path, where, "\n")))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"{key}:" in done.stderr, done.stderr


def _config(tmp_path, where, bad):
    pipeline = digits_pipeline(name="door")
    device, mqtt_extra = "test-pi", {}
    if where == "name":
        pipeline["name"] = "door" + bad
    elif where == "device":
        device = "pi" + bad
    elif where == "prefix":
        mqtt_extra["topic_prefix"] = "edge" + bad
    elif where == "prefix-level":
        mqtt_extra["topic_prefix"] = "edge/ho" + bad + "me"
    elif where == "host":
        mqtt_extra["host"] = "127.0.0.1" + bad
    elif where == "client_id":
        mqtt_extra["client_id"] = "cam" + bad
    elif where == "topic":
        pipeline = {"name": "vib", "source": {"type": "mqtt", "topic": "sensors/vib" + bad},
                    "model": pipeline["model"]}
    return write_config(tmp_path / "c.toml", None, [pipeline], device=device,
                        mqtt_extra=mqtt_extra)


def test_clean_names_still_pass(tmp_path):
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline(name="door.front-1")],
                          device="pi_2", mqtt_extra={"topic_prefix": "home/edge"})
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
