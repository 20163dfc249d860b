"""Tracked objects: a SORT-like tracker, zones, and the object lifecycle events built on them."""
