"""Configuration: one TOML file, validated up front into typed objects.

`loader.load_config` is the entry point; `schema` holds the section dataclasses and `typed` the
builder that turns TOML tables into them.
"""
