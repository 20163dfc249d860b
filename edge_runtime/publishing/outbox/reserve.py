"""Room kept on the disk for the outbox's own housekeeping: a reserve file, given up when full.

When another program fills the file system, SQLite still needs a little room to work its way out:
the WAL grows by a few pages for the transaction that deletes delivered or old rows, or saves the
seq and drop counters, and a checkpoint may extend the database by the pages the WAL holds. With
no byte free, those fail too and the outbox is stuck until someone frees space (issue 12,
scenario 3). So the outbox holds `<outbox>.reserve`, a preallocated file of the WAL's size; when
SQLite reports a full disk the reserve is deleted and the operation tried again, and it is made
again once the disk has room.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class Reserve:
    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def held(self) -> bool:
        return self.path.exists()

    def take(self) -> bool:
        """Allocate the reserve file (really: posix_fallocate); False if the disk has no room."""
        if self.held:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            logger.debug("cannot create %s: %s", self.path, exc)
            return False
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError as exc:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            logger.debug("cannot reserve %d bytes in %s: %s", self.size, self.path, exc)
            return False
        os.close(fd)
        return True

    def give_up(self) -> bool:
        """Delete the reserve so the outbox can use its room; False if there was none."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            logger.warning("cannot delete the outbox reserve %s: %s", self.path, exc)
            return False
        logger.warning("the disk is full: gave up the outbox's reserve (%s, %d bytes) so it can "
                       "still delete, save its counters and drop the oldest results", self.path,
                       self.size)
        return True
