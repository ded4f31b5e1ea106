"""Math-equivalence worker: math-verify in a process the trainer can kill.

Started by `zeroplay.verifiers.math` as `python -s -P -B _math_worker.py PARENT_PID` with a
clean environment. math-verify's own timeouts are signal-based and only work in a main thread,
so they are off here (`parsing_timeout=None`, `timeout_seconds=None`); the parent enforces a
deadline per pair and kills this process when one is missed (some inputs, e.g. `9^{9^{9^9}}`,
make sympy run for ever). Frames (`_wire`) in: {"id", "pred", "gold"}; out: {"id", "result"}.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

import ctypes  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402

import _wire  # noqa: E402

_MEMORY_BYTES = int(os.environ.get("ZEROPLAY_MATH_WORKER_MEMORY_MB", "4096")) * 1024 * 1024


def _parse(text: str, parse, latex_only) -> list:
    text = text.strip()
    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        candidates = [(text, None)]
    else:  # a bare answer: read it as LaTeX first, then as LaTeX or a plain expression
        candidates = [(f"${text}$", latex_only), (text, None)]
    for cand, config in candidates:
        try:
            parsed = (parse(cand, parsing_timeout=None) if config is None
                      else parse(cand, extraction_config=config, parsing_timeout=None))
        except Exception:  # noqa: BLE001
            parsed = []
        if parsed:
            return parsed
    return []


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the trainer
    if len(sys.argv) > 1 and os.getppid() != int(sys.argv[1]):
        os._exit(0)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))
    except (ValueError, OSError):
        pass
    logging.disable(logging.WARNING)  # math-verify warns that its timeouts are off
    sys.setrecursionlimit(10_000)
    import functools

    from math_verify import LatexExtractionConfig, parse, verify

    latex_only = [LatexExtractionConfig()]
    # Golds repeat (one gold, many sampled answers) and so do popular answers: parse once.
    parse_cached = functools.lru_cache(maxsize=4096)(
        lambda text: _parse(text, parse, latex_only))
    # Warm sympy's caches and lazy imports before saying hello.
    verify(parse_cached("\\frac{1}{2}"), parse_cached("0.5"), timeout_seconds=None)
    _wire.write_frame(1, {"hello": True, "pid": os.getpid()})
    while True:
        task = _wire.read_frame(0)
        if task is None:
            return
        try:
            gold = parse_cached(str(task["gold"]))
            pred = parse_cached(str(task["pred"]))
            ok = bool(gold and pred and verify(gold, pred, float_rounding=6,
                                                numeric_precision=15, strict=True,
                                                timeout_seconds=None))
        except BaseException:  # noqa: BLE001 -- MemoryError, RecursionError, sympy bugs
            ok = False
        _wire.write_frame(1, {"id": task.get("id"), "result": ok})


if __name__ == "__main__":
    main()
