"""Evaluation protocols: sampling settings, repeats and lengths of each seed's evaluation (methods.md 7).

    p = resolve("cpmobius", num_samples=None, temperature=None)   # a Protocol, overrides applied
    p.samples_for("aime24")  -> 32

- "default": greedy, 1 sample, 512 new tokens (quick checks on small models and CPUs).
- "azr": greedy, 1 sample; math 16384 new tokens, code 8096.
- "cpmobius": T 0.7, top-p 0.9, 4096 new tokens; avg over x32 AIME24, x10 AMC, x5 MATH500, x6
  Minerva, x3 OlympiadBench copies (x1 elsewhere). Its repetition penalty 1.05 is not applied: the
  sampler has none (recorded in the report's `protocol.notes`).
- "ttrl": avg@16 at T 0.6, top-p 0.95, 3072 new tokens.

`--num_samples` replaces every per-benchmark repeat count; `--temperature`, `--top_p` and
`--max_new_tokens` replace the preset's values for every benchmark.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

CODE_KINDS = ("cruxeval_output", "cruxeval_input", "humaneval")


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    num_samples: int = 1  # repeats of a benchmark not in `repeats`
    repeats: Mapping[str, int] = dataclasses.field(default_factory=dict)
    max_new_tokens: int = 512  # math and everything else
    max_new_tokens_code: int | None = None  # code benchmarks (None: max_new_tokens)
    notes: str = ""

    def samples_for(self, benchmark: str) -> int:
        return int(self.repeats.get(benchmark, self.num_samples))

    def max_new_tokens_for(self, kind: str) -> int:
        if kind in CODE_KINDS and self.max_new_tokens_code is not None:
            return int(self.max_new_tokens_code)
        return int(self.max_new_tokens)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "repeats": dict(self.repeats)}


PROTOCOLS: dict[str, Protocol] = {
    "default": Protocol("default", temperature=0.0, num_samples=1, max_new_tokens=512),
    "azr": Protocol("azr", temperature=0.0, num_samples=1, max_new_tokens=16384, max_new_tokens_code=8096),
    "cpmobius": Protocol("cpmobius", temperature=0.7, top_p=0.9, num_samples=1, max_new_tokens=4096,
                         repeats={"aime24": 32, "amc23": 10, "math500": 5, "minerva_math": 6, "olympiadbench": 3},
                         notes="repetition penalty 1.05 of CPMobius not applied (the sampler has none)"),
    "ttrl": Protocol("ttrl", temperature=0.6, top_p=0.95, num_samples=16, max_new_tokens=3072),
}


def resolve(name: str = "default", *, num_samples: int | None = None, temperature: float | None = None,
            top_p: float | None = None, max_new_tokens: int | None = None) -> Protocol:
    """The preset `name` with the given overrides (None keeps the preset's value)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    p = PROTOCOLS[name]
    if num_samples is not None:
        if num_samples < 1:
            raise ValueError(f"--num_samples must be >= 1, got {num_samples}")
        p = dataclasses.replace(p, num_samples=int(num_samples), repeats={})
    if temperature is not None:
        if temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {temperature}")
        p = dataclasses.replace(p, temperature=float(temperature))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"--top_p must be in (0, 1], got {top_p}")
        p = dataclasses.replace(p, top_p=float(top_p))
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise ValueError(f"--max_new_tokens must be >= 1, got {max_new_tokens}")
        p = dataclasses.replace(p, max_new_tokens=int(max_new_tokens), max_new_tokens_code=None)
    return p
