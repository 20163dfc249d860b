"""Progress bars on stderr (tqdm from the 'convert' extra); silent when disabled or missing."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Bar:
    """A progress bar for one task; a no-op when `enabled` is False or tqdm is not installed."""

    def __init__(self, description: str, total: int | None, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc=description, file=sys.stderr, leave=False,
                             dynamic_ncols=True)

    def update_to(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def set_description(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Progress:
    enabled: bool = True

    def bar(self, description: str, total: int | None) -> Bar:
        return Bar(description, total, self.enabled)

    def iterate(
        self, items: Iterable[T], description: str, total: int | None = None
    ) -> Iterator[T]:
        with self.bar(description, total) as bar:
            for done, item in enumerate(items, start=1):
                yield item
                bar.update_to(done)
