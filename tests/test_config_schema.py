"""The config's tables read as one design: moved keys say where they went, fields are checked
against each other with the key named, and every table goes through the typed schema."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO, VIBRATION_MODEL, digits_pipeline, edge_runtime, write_config
from edge_runtime.app_config import load_config
from edge_runtime.config.moved import MOVED
from edge_runtime.config.schema import RetryConfig
from edge_runtime.config.typed import ConfigError


def old_config(tmp_path: Path, mqtt: dict) -> Path:
    return write_config(tmp_path / "old.toml", None, [digits_pipeline()], mqtt_extra=mqtt)


@pytest.mark.parametrize("old,new", sorted(MOVED.items()))
def test_a_moved_key_is_named_with_its_new_place(tmp_path, old, new):
    table, _, key = old.partition(".")
    value = {"outbox_path": "o.sqlite", "outbox_sync": "normal"}.get(key, 5)
    with pytest.raises(ConfigError) as caught:
        load_config(old_config(tmp_path, {key: value}))
    assert caught.value.key == old
    assert f"moved: set {new} instead" in caught.value.message


def test_the_new_places_of_moved_keys_exist(tmp_path):
    """Each new place named in MOVED is a key the schema accepts."""
    tables: dict = {}
    for new in MOVED.values():
        section, key = new.strip("[").split("] ")
        *parents, last = section.split(".")
        target = tables.setdefault(parents[0], {}) if parents else tables
        target.setdefault(last, {})[key] = {"path": "o.sqlite", "sync": "normal", "max_bytes": 4096,
                                            "max_messages": 5}.get(key, 2.0)
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline()], **tables)
    app = load_config(config)
    assert app.outbox.path == tmp_path / "o.sqlite" and app.outbox.sync == "normal"
    assert app.retry.broker.min_delay == app.retry.broker.max_delay == 2.0


def test_check_and_run_name_the_old_key_and_its_new_place(tmp_path):
    config = old_config(tmp_path, {"stats_interval": 10.0})
    for command in ("check", "run"):
        done = edge_runtime(command, "--config", str(config))
        assert done.returncode == 2, done.stderr
        assert f"{config}: mqtt.stats_interval: this key moved: set [stats] interval instead" \
            in done.stderr


def test_csv_has_one_pacing_key(tmp_path):
    pipeline = {"name": "v", "model": {"path": str(VIBRATION_MODEL)},
                "source": {"type": "csv", "path": "x.csv", "fps": 5.0}}
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path / "c.toml", None, [pipeline]))
    assert caught.value.key == "pipelines[0].source.fps"
    assert "a csv source does not take fps: use rate (rows per second" in caught.value.message


@pytest.mark.parametrize("which", ["broker", "source", "model"])
def test_retry_min_above_max_is_an_error_naming_the_key(tmp_path, which):
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline()],
                          retry={which: {"min_delay": 5.0, "max_delay": 2.0}})
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.key == f"retry.{which}.max_delay"
    assert caught.value.message == "must be >= min_delay (5.0), got 2.0"


def test_retry_values_reach_the_typed_config(tmp_path):
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline()],
                          retry={"source": {"min_delay": 0.5, "max_delay": 4.0}})
    retry = load_config(config).retry
    assert (retry.source.min_delay, retry.source.max_delay) == (0.5, 4.0)
    assert retry.model == RetryConfig().model  # untouched tables keep their defaults


def test_change_publishing_max_interval_below_min_interval(tmp_path):
    pipeline = digits_pipeline()
    pipeline["publish"] = {"mode": "change", "min_interval": 10.0, "max_interval": 5.0}
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path / "c.toml", None, [pipeline]))
    assert caught.value.key == "pipelines[0].publish.max_interval"


@pytest.mark.parametrize("table,key,message", [
    ({"level": "loud"}, "logging.level", "must be one of debug, info, warning, error, got 'loud'"),
    ({"level": 3}, "logging.level", "expected a string, got int 3"),
    ({"file": "x.log"}, "logging.file", "unknown key (expected one of: level)"),
])
def test_logging_goes_through_the_typed_schema(tmp_path, table, key, message):
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline()], logging=table)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert (caught.value.key, caught.value.message) == (key, message)


def test_logging_level_any_case(tmp_path):
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline()], logging={"level": "Debug"})
    assert load_config(config).log_level == "DEBUG"


@pytest.mark.parametrize("path", [
    *sorted(EXAMPLES.glob("*/config.toml")),
    REPO / "deploy" / "config.example.toml",
])
def test_shipped_configs_use_no_moved_key(path):
    """The examples and the installed default config are in the current layout."""
    doc = tomllib.loads(path.read_text())
    for old in MOVED:
        table, _, key = old.partition(".")
        assert key not in doc.get(table, {}), f"{path}: {old}"
    for pipeline in doc.get("pipelines", []):
        if pipeline.get("source", {}).get("type") == "csv":
            assert "fps" not in pipeline["source"]
