"""PasoDoble: a proposer writes problems from knowledge passages, a separate solver answers them.

    python -m zeroplay.train --config configs/pasodoble.py --workdir runs/pasodoble             # SmolLM2 x 2
    python -m zeroplay.train --config configs/pasodoble.py:tiny --workdir runs/pasodoble_tiny   # random, CPU
    python -m zeroplay.train --config configs/pasodoble.py:tiny,offline --workdir ...            # offline mode
    python -m zeroplay.train --config configs/pasodoble.py:qwen3-1.7b-gpu8 --workdir ...         # reference run
    python -m zeroplay.train --config configs/pasodoble.py:qwen3-1.7b-gpu1 --workdir ...         # one 80 GB GPU

Variants: "" (two copies of the embedded SmolLM2-135M-Instruct, sized for a 2-core CPU), "tiny"
(two random tiny models, byte tokenizer, 2 steps), and the reference runs of methods.md section 4
(G_p = G_s = 6, T = 0.6, 6144 new tokens, proposer prompts <= 1280 and solver prompts <= 512 tokens,
Dr. GRPO loss, no KL, lr 1e-6 constant, grad-clip 1.0, 2000 online steps, checkpoint every 40) for
Qwen3 / Qwen2.5 bases on an 8-GPU node or a TPU slice; their models are read from
$ZEROPLAY_MODELS/<name>. Append ",offline" for the offline mode (200 outer iterations of 10
proposer + 5 solver updates). A larger knowledge base: --config.game.passages=/path/passages.jsonl.
"""
import os

import ml_collections

QWEN3 = dict(family="qwen3", vocab_size=151936, qk_norm=True, rope_theta=1e6, tie_word_embeddings=True,
             attention_bias=False, max_position_embeddings=40960, rms_norm_eps=1e-6, head_dim=128)
QWEN25 = dict(family="qwen2", vocab_size=151936, rope_theta=1e6, tie_word_embeddings=True, attention_bias=True,
              max_position_embeddings=32768, rms_norm_eps=1e-6)
FULL_SIZE = {
    "qwen3-0.6b": ("Qwen3-0.6B-Base", dict(QWEN3, hidden_size=1024, intermediate_size=3072, num_layers=28,
                                             num_heads=16, num_kv_heads=8)),
    "qwen3-1.7b": ("Qwen3-1.7B-Base", dict(QWEN3, hidden_size=2048, intermediate_size=6144, num_layers=28,
                                             num_heads=16, num_kv_heads=8)),
    "qwen3-4b": ("Qwen3-4B-Base", dict(QWEN3, hidden_size=2560, intermediate_size=9728, num_layers=36,
                                         num_heads=32, num_kv_heads=8)),
    "qwen2.5-0.5b": ("Qwen2.5-0.5B", dict(QWEN25, hidden_size=896, intermediate_size=4864, num_layers=24,
                                            num_heads=14, num_kv_heads=2)),
    "qwen2.5-1.5b": ("Qwen2.5-1.5B", dict(QWEN25, hidden_size=1536, intermediate_size=8960, num_layers=28,
                                            num_heads=12, num_kv_heads=2)),
    "qwen2.5-3b": ("Qwen2.5-3B", dict(QWEN25, hidden_size=2048, intermediate_size=11008, num_layers=36,
                                        num_heads=16, num_kv_heads=2)),
}
MESHES = {"gpu8": dict(data=1, fsdp=8, tensor=1), "tpu": dict(data=1, fsdp=16, tensor=1),
          "gpu1": dict(data=1, fsdp=1, tensor=1)}  # gpu1: both policies on one 80 GB GPU (1.7B and smaller)
TINY_SHAPE = dict(family="qwen2", vocab_size=258, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=2, num_kv_heads=1, tie_word_embeddings=True, attention_bias=True,
                  max_position_embeddings=1024)


def _policy(max_new, max_prompt):
    return ml_collections.ConfigDict(dict(
        model=dict(name="smollm2-135m-instruct", dtype="float32", param_dtype="float32", scan_layers=True,
                   remat="none", shape=None, tokenizer=None),
        train=dict(lr=1e-6, schedule="constant", grad_clip=1.0, clip_low=0.2, clip_high=0.2, kl_coef=0.0,
                   aggregation="seq_mean_token_sum_norm", max_tokens=max_new, entropy_coef=0.0,
                   micro_batch=4, logprob_chunk=128),  # full logits of 16 x 768 tokens: a 27 GB update
        sampling=dict(max_new_tokens=max_new, temperature=0.6, top_p=1.0, top_k=0, max_prompt_tokens=max_prompt),
    ))


def get_config(arg=None):
    parts = [x for x in (arg or "").split(",") if x]
    offline = "offline" in parts
    parts = [x for x in parts if x != "offline"]
    arg = parts[0] if parts else None
    if len(parts) > 1:
        raise ValueError(f"configs/pasodoble.py takes one variant (and ',offline'), got {parts}")

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 4
    c.game = ml_collections.ConfigDict(dict(
        name="pasodoble", mode="offline" if offline else "online", passages=None, passages_per_step=1,
        proposals=4, solver_samples=4, low=0.2, high=1.0, jaccard_threshold=0.8,
        history_size=100, proposer_updates=10, solver_updates=5, solver_batch=4, think=True, chat=True))
    c.roles = ml_collections.ConfigDict(dict(proposer="proposer", solver="solver"))
    c.policies = ml_collections.ConfigDict()
    c.policies.proposer = _policy(256, 768)
    c.policies.solver = _policy(256, 512)
    c.loop = ml_collections.ConfigDict(dict(
        checkpoint_every=1, keep_checkpoints=2, async_checkpoint=True, eval_every=0, sample_batch=32,
        train_row_multiple=8, train_len_multiple=64, progress=True))
    c.verifiers = ml_collections.ConfigDict(dict(code_workers=0, code_memory_mb=1024))
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.rules = ml_collections.config_dict.placeholder(list)

    if arg == "tiny":
        c.steps = 2
        c.game.proposals = 2
        c.game.solver_samples = 2
        c.game.solver_batch = 2
        c.game.chat = False
        if offline:  # one proposer step, then one solver step
            c.game.proposer_updates = 1
            c.game.solver_updates = 1
        for p in (c.policies.proposer, c.policies.solver):
            p.model.name = "random"
            p.model.shape = TINY_SHAPE
            p.model.tokenizer = "byte"
            p.train.lr = 1e-3
            p.train.micro_batch = None
            p.train.logprob_chunk = None
            p.train.max_tokens = 16
            p.sampling.max_new_tokens = 16
            p.sampling.temperature = 1.0
            p.sampling.max_prompt_tokens = 256
        c.loop.progress = False
        c.loop.train_len_multiple = 32
        c.loop.train_row_multiple = 4
    elif arg and arg.rsplit("-", 1)[0] in FULL_SIZE and arg.rsplit("-", 1)[1] in MESHES:
        model, where = arg.rsplit("-", 1)
        folder, shape = FULL_SIZE[model]
        c.steps = 200 * 15 if offline else 2000
        c.game.proposals = 6
        c.game.solver_samples = 6
        c.game.solver_batch = 6
        c.game.proposer_updates = 10
        c.game.solver_updates = 5
        for p, max_prompt in ((c.policies.proposer, 1280), (c.policies.solver, 512)):
            p.model.name = os.path.join(os.environ.get("ZEROPLAY_MODELS", "models"), folder)
            p.model.shape = shape
            p.model.dtype = "bfloat16"
            p.model.param_dtype = "float32"
            p.model.remat = "full"
            p.train.lr = 1e-6
            p.train.max_tokens = 6144
            p.train.compute_dtype = "bfloat16"
            p.train.micro_batch = 1 if where == "gpu1" else 8
            p.train.logprob_chunk = 512 if where == "gpu1" else 1024
            p.sampling.max_new_tokens = 6144
            p.sampling.temperature = 0.6
            p.sampling.max_prompt_tokens = max_prompt
        # gpu1: the KV cache of 64 rows x 10k slots alone is 75 GB (python -m zeroplay.memory)
        c.loop.sample_batch = 16 if where == "gpu1" else 64
        c.loop.train_row_multiple = 16
        c.loop.train_len_multiple = 512
        c.loop.checkpoint_every = 40
        c.mesh = ml_collections.ConfigDict(MESHES[where])
    elif arg not in (None, ""):
        variants = ["tiny"] + [f"{m}-{w}" for m in FULL_SIZE for w in MESHES]
        raise ValueError(f"unknown configs/pasodoble.py variant {arg!r}; use one of {variants} (optionally "
                         "with ',offline') or nothing")
    return c
