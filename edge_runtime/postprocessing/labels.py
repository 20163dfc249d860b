"""Class names from a labels file: one reader, used by the daemon and by edge-convert.

Line N (counting from 0) is the name of class N. A blank line inside the file is a class whose
name is "" (dropping it would shift every later class onto the wrong name); blank lines at the end
are no classes. Names are stripped of surrounding whitespace; a UTF-8 byte order mark is ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file."""


def read_labels(path: Path) -> tuple[str, ...]:
    """The class names in `path`, index for index."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise LabelsError(f"no such file '{path}'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"cannot read '{path}' ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise LabelsError(f"'{path}' holds no labels")
    return tuple(line.strip() for line in lines)


def warn_blank_labels(labels: tuple[str, ...], where: str) -> list[int]:
    """Warn about blank labels (those classes are published as label ""); their indices."""
    blank = [index for index, label in enumerate(labels) if not label]
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        logger.warning("%s: %d blank label(s), class index %s: results of those classes carry "
                       "the label \"\"", where, len(blank), shown)
    return blank
