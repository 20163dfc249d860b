"""Errors edge-convert reports to the user: one line each, naming the file or option at fault."""

from __future__ import annotations


class ConvertError(Exception):
    """Bad input: a missing or unreadable file, data that does not fit the model, a bad option.

    The CLI prints the message and exits with status 2.
    """


class ConversionFailed(Exception):
    """The model could not be converted or did not pass verification; no file was written.

    The CLI prints the message and exits with status 1.
    """
