"""Host-side stop strings (e.g. `</answer>`): text-level stops that no single token id captures.

The decode loop runs in chunks; between chunks `StopChecker.update` decodes the live rows and
reports which now contain a stop string, so the device loop can exit early. At the end,
`lengths` cuts each stopped row just after the token that completes its first stop string.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class StopChecker:
    def __init__(self, stop_strings: Sequence[str], tokenizer):
        self.stops = tuple(s for s in stop_strings if s)
        self.tokenizer = tokenizer
        self.stopped: np.ndarray | None = None

    def _hit(self, ids: np.ndarray) -> bool:
        text = self.tokenizer.decode(ids.tolist(), skip_special_tokens=False)
        return any(s in text for s in self.stops)

    def update(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Rows (not stopped before) whose completion so far contains a stop string."""
        if self.stopped is None:
            self.stopped = np.zeros(tokens.shape[0], bool)
        new = np.zeros_like(self.stopped)
        for r in np.flatnonzero(~self.stopped):
            if self._hit(tokens[r, : lengths[r]]):
                new[r] = True
        self.stopped |= new
        return new

    def reset(self, rows: np.ndarray) -> None:
        """Rows that now hold a new request (continuous batching): checked afresh."""
        if self.stopped is not None:
            self.stopped[rows] = False

    def take(self, rows: np.ndarray) -> None:
        """The rows moved to a smaller batch (continuous batching's drain): row i is old row rows[i]."""
        if self.stopped is not None:
            self.stopped = self.stopped[rows]

    def lengths(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Per row, the shortest prefix whose text contains a stop string (else its length)."""
        out = lengths.copy()
        for r in range(tokens.shape[0]):
            n = int(lengths[r])
            if n == 0 or not self._hit(tokens[r, :n]):
                continue
            lo, hi = 1, n  # smallest k in [1, n] with a hit: containment is monotone in k
            while lo < hi:
                mid = (lo + hi) // 2
                if self._hit(tokens[r, :mid]):
                    hi = mid
                else:
                    lo = mid + 1
            out[r] = lo
        return out
