"""Resume helpers: make the run's logs agree with the checkpoint it restarts from."""
from __future__ import annotations

import json
import os


def trim_jsonl(path: str | os.PathLike, last_step: int | None, key: str = "step") -> int:
    """Drop lines of a JSON-lines log whose `key` is past `last_step` (all of them when None).

    A run killed after logging step k but before committing its checkpoint redoes step k on
    restart; trimming first keeps one line per step. Returns the number of lines kept. The file
    is replaced atomically; a torn last line (killed mid-write) is dropped.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return 0
    kept = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if last_step is not None and int(record.get(key, -1)) <= last_step:
                kept.append(line.rstrip("\n"))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(line + "\n" for line in kept)
    os.replace(tmp, path)
    return len(kept)
