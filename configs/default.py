"""The default run: Absolute Zero on the embedded SmolLM2-135M-Instruct, sized for a 2-core CPU.

    python -m zeroplay.train --workdir runs/default
    python -m zeroplay.train --config configs/default.py:tiny --workdir runs/tiny   # random tiny model
    python -m zeroplay.train --workdir runs/default --config.steps=6                 # resume, go further

It is configs/azr.py's default variant (see there for every key); any key can be overridden with
`--config.a.b=value`.
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location("zeroplay_configs_azr", os.path.join(os.path.dirname(__file__), "azr.py"))
_azr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_azr)


def get_config(arg=None):
    if arg not in (None, "", "tiny"):
        raise ValueError(f"unknown configs/default.py variant {arg!r}; use 'tiny' or nothing")
    return _azr.get_config(arg)
