"""Command line of the main job.

    python -m zeroplay.train [--config configs/default.py[:tiny]] --workdir DIR [--config.k=v ...]

Until the self-play loop lands (main-job issue) this runs the end-to-end smoke path of what exists:
load the configured model (the embedded SmolLM2 by default), shard it on the configured mesh,
and sample `sampling.num_samples` chat completions of `demo_prompt` with the jitted sampler,
writing them to DIR/demo.jsonl.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                               "default.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Config file (configs/<name>.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Run directory (metrics, checkpoints).")


def load_model(cfg):
    """(model, params, tokenizer or None) for `cfg.model`, placed on the configured mesh."""
    import jax

    from zeroplay.models import ModelConfig, init_params, load_pretrained, load_tokenizer
    from zeroplay.parallel import make_mesh, param_shardings
    from zeroplay.models.decoder import logical_axes

    mesh = make_mesh(cfg.mesh.to_dict())
    m = cfg.model
    if m.name == "random":
        mcfg = ModelConfig(**m.random.to_dict(), dtype=m.dtype, param_dtype=m.param_dtype,
                           scan_layers=m.scan_layers, remat=m.remat)
        model, params = init_params(mcfg, jax.random.PRNGKey(cfg.seed))
        params = jax.device_put(params, param_shardings(params, logical_axes(mcfg), mesh, cfg.rules))
        return model, params, None
    model, params = load_pretrained(m.name, dtype=m.dtype, param_dtype=m.param_dtype, scan_layers=m.scan_layers,
                                    remat=m.remat, mesh=mesh, rules=cfg.rules)
    return model, params, load_tokenizer(m.name)


def run(cfg, workdir: str) -> None:
    import jax
    import numpy as np

    from zeroplay.sampling import chat_prompts, generate

    os.makedirs(workdir, exist_ok=True)
    t0 = time.perf_counter()
    model, params, tok = load_model(cfg)
    print(f"model {cfg.model.name}: {sum(x.size for x in jax.tree.leaves(params)):,} params, "
          f"loaded in {time.perf_counter() - t0:.1f}s on {jax.device_count()} {jax.devices()[0].platform} device(s)")
    if tok is not None:
        prompts = chat_prompts(tok, [cfg.demo_prompt])
        eos = tuple(sorted({tok.eos_token_id, *tok.convert_tokens_to_ids(["<|im_end|>"])} - {None}))
    else:
        prompts = [list(np.random.RandomState(cfg.seed).randint(0, model.cfg.vocab_size, 12))]
        eos = ()
    s = cfg.sampling
    t1 = time.perf_counter()
    out = generate(model, params, prompts, max_new_tokens=s.max_new_tokens, num_samples=s.num_samples,
                   temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, eos_token_ids=eos,
                   rng=jax.random.PRNGKey(cfg.seed))
    dt = time.perf_counter() - t1
    n_tok = int(np.asarray(out.lengths).sum())
    print(f"sampled {s.num_samples} completions, {n_tok} tokens in {dt:.1f}s (compile included)")
    with open(os.path.join(workdir, "demo.jsonl"), "w") as f:
        for g in range(s.num_samples):
            ids = np.asarray(out.tokens[0, g, : int(out.lengths[0, g])]).tolist()
            text = tok.decode(ids, skip_special_tokens=True) if tok is not None else None
            f.write(json.dumps({"sample": g, "tokens": ids, "text": text,
                                "logprob": float(np.asarray(out.logprobs[0, g, : len(ids)]).sum())}) + "\n")
            print(f"--- sample {g}: {text if text is not None else ids}")


def main(argv=None):
    def _main(_):
        from zeroplay.models import ModelLoadError

        logging.set_verbosity(logging.WARNING)  # keep JAX's backend probing out of the output

        try:
            run(_CONFIG.value, _WORKDIR.value)
        except ModelLoadError as e:
            sys.exit(f"error: {e}")

    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
