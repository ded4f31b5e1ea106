"""Co-rewarding-I: question and rephrasing label each other (methods.md section 3).

    python -m zeroplay.train --config configs/co_rewarding_i.py --workdir runs/cri              # SmolLM2
    python -m zeroplay.train --config configs/co_rewarding_i.py:tiny --workdir runs/cri_tiny    # random, CPU
    python -m zeroplay.train --config configs/co_rewarding_i.py:qwen3-8b-base-gpu4 --workdir ...
    python -m zeroplay.train --config configs/co_rewarding_i.py:tiny,generate --workdir runs/cri_gen
    python -m zeroplay.train --config configs/co_rewarding_i.py:qwen3-8b-base-gpu4,generate --workdir ...

Variants: "" (the embedded SmolLM2-135M-Instruct on easy reasoning-gym arithmetic, sized for a
2-core CPU), "tiny" (a random tiny model, byte tokenizer, 2 steps), and "<model>-<mesh>" with the
paper's settings: 128 questions x G=8 (plus 8 for each rephrasing), lr 3e-6 cosine with 10%
warmup, clip 0.2, prompts 512 / responses 3072 tokens, T=1.0, KL 0.005 (k3, as a loss) to the
initial model, 200 steps (the paper's 170-220). The full-size source is a JSON lines file of
questions with `rephrasing` fields ($ZEROPLAY_DATA/math_train_rephrased.jsonl); without the field a
procedural rephrasing is used (zeroplay.data.rephrase).

Rephrasings (`game.rephrasings`): "data" (the default: the source's `rephrasing` field, else the
procedural one) or "generate": every question is rephrased once before training by the game's
"rephraser" role with the paper's prompt (T=0.7, top-p 0.8 as the reference rewrite script;
`game.rephrase_temperature=0` is greedy), up to `game.rephrase_max_new_tokens` (256 default, 16
tiny, 1024 full size), cached in <workdir>/rephrasings.jsonl and reused on resume. Modifiers:
- ",generate": the rephraser is the trained policy itself (roles.rephraser="policy"), sampling
  with the initial params; the prompt goes through the policy's `sampling.max_prompt_tokens`
  (cut from the left: keep it above the instruction's ~200 tokens plus the longest question).
- ",generate_separate": the rephraser is a policy of its own, `policies.rephraser` (no role of it
  trains): by default a copy of the policy's section with prompts up to 1024 tokens; point
  it at a bigger model (the paper's Qwen3-32B) by editing `policies.rephraser.model` (name, shape).
  It must share the solver's tokenizer. The loop gives every policy an optimizer state and
  checkpoints it, so this one costs its params plus the AdamW moments in memory and in each
  checkpoint for the whole run, although it never updates.
Setting `--config.game.rephrasings=generate` alone fails to parse (roles must then map
"rephraser"); use a modifier.
"""
import os

from zeroplay.games.label_free import EASY_ARITHMETIC, run_config

MODIFIERS = ("generate", "generate_separate")
REPHRASE_TOKENS = {"": 256, "tiny": 16, "full": 1024}


def get_config(arg=None):
    parts = [x for x in (arg or "").split(",") if x]
    mods = [x for x in parts if x in MODIFIERS]
    if len(mods) > 1:
        raise ValueError(f"configs/co_rewarding_i.py: use one of the modifiers {list(MODIFIERS)}, got {mods}")
    arg = ",".join(x for x in parts if x not in MODIFIERS) or None
    full_steps = 200
    c = run_config(
        "co_rewarding_i", arg,
        game=dict(source="rg:basic_arithmetic", source_options=EASY_ARITHMETIC,
                  size=500, data_seed=1, questions_per_step=4,
                  samples=4),
        roles=dict(solver="policy"),
        train=dict(kl_coef=0.005),
        full_game=dict(source="jsonl:" + os.path.join(os.environ.get("ZEROPLAY_DATA", "data"),
                                                      "math_train_rephrased.jsonl"),
                       size=0, questions_per_step=128, samples=8),
        full_train=dict(lr=3e-6, schedule="cosine", warmup_steps=full_steps // 10, clip_low=0.2, clip_high=0.2,
                        kl_coef=0.005, kl_estimator="k3", b1=0.9, b2=0.999, eps=1e-8),
        full_sampling=dict(max_prompt_tokens=512, max_new_tokens=3072, temperature=1.0, top_p=1.0),
        full_steps=full_steps)
    if mods:
        import ml_collections

        c.game.rephrasings = "generate"
        variant = "tiny" if arg == "tiny" else "full" if arg else ""
        c.game.rephrase_max_new_tokens = REPHRASE_TOKENS[variant]
        if mods[0] == "generate":
            c.roles.rephraser = "policy"
            if variant == "":  # SmolLM2's 256 would cut into the instruction
                c.policies.policy.sampling.max_prompt_tokens = 512
        else:
            sep = ml_collections.ConfigDict(c.policies.policy.to_dict())
            sep.train.kl_coef = 0.0  # never trains: no reference copy
            if variant != "tiny":  # the tiny model has 1024 positions
                sep.sampling.max_prompt_tokens = max(1024, sep.sampling.max_prompt_tokens)
            sep.sampling.max_new_tokens = c.game.rephrase_max_new_tokens
            c.policies.rephraser = sep
            c.roles.rephraser = "rephraser"
    return c
