"""Self-play games: one file per method, each a `Game` (see `base.py`) with a `Settings` dataclass.

    game = make_game("azr", {"batch_per_task_role": 4})   # settings: the config's `game` section

A game module defines `Settings` (a frozen dataclass: the method's own constants, defaults from
its reference code) and `make(settings) -> Game`. Unknown settings keys are one clear error.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

from zeroplay.games.base import Completion, Context, Episode, Game, Request, Sampling

GAMES = {
    "azr": "zeroplay.games.azr",
    "pasodoble": "zeroplay.games.pasodoble",
    "sqlm": "zeroplay.games.sqlm",
    "r_zero": "zeroplay.games.r_zero",
    "cpmobius": "zeroplay.games.cpmobius",
    "co_rewarding_i": "zeroplay.games.co_rewarding_i",
    "co_rewarding_ii": "zeroplay.games.co_rewarding",
    "ttrl": "zeroplay.games.ttrl",
    "rent": "zeroplay.games.rent",
    "intuitor": "zeroplay.games.intuitor",
    "arith_world": "zeroplay.games.arith_world",
}


def game_module(name: str):
    if name not in GAMES:
        raise ValueError(f"unknown game {name!r}; known games: {sorted(GAMES)}")
    return importlib.import_module(GAMES[name])


def parse_settings(name: str, settings: Mapping[str, Any] | None):
    """The game's `Settings` from a dict, rejecting unknown keys with one line."""
    cls = game_module(name).Settings
    d = dict(settings or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown game.{unknown[0]} for game {name!r}; its settings are {sorted(known)}")
    for f in dataclasses.fields(cls):  # lists from a ConfigDict come back as lists: keep tuples tuples
        if f.name in d and isinstance(d[f.name], list):
            d[f.name] = tuple(d[f.name])
    return cls(**d)


def make_game(name: str, settings: Mapping[str, Any] | None = None) -> Game:
    return game_module(name).make(parse_settings(name, settings))


__all__ = ["Game", "Context", "Request", "Completion", "Episode", "Sampling", "GAMES", "make_game",
           "parse_settings", "game_module"]
