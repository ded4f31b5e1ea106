"""The rollout sampler against transformers `generate` and teacher forcing, plus its contracts.

Every behaviour test runs on both decode steps through the `decode_kernel` fixture (conftest.py):
"xla", the XLA operations that GPUs and TPUs run, and "cpu", the fused CPU kernel (skipped with
the reason where it cannot be built). Sharded meshes are XLA only (the kernel is one device)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from zeroplay.models import load_pretrained
from zeroplay.parallel import make_mesh
from zeroplay.sampling import Buckets, chat_prompts, compile_count, generate

LOGPROB_TOL = 1e-4  # |sampled logprob - teacher-forced log-softmax|, float32
VOCAB = 131


def tiny_hf(family: str):
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512)
    if family == "llama":
        cfg = transformers.LlamaConfig(tie_word_embeddings=True, **kw)
    elif family == "qwen2":
        cfg = transformers.Qwen2Config(tie_word_embeddings=False, **kw)
    else:
        cfg = transformers.Qwen3Config(tie_word_embeddings=False, head_dim=32, **kw)
    torch.manual_seed({"llama": 0, "qwen2": 1, "qwen3": 2}[family])
    model = transformers.AutoModelForCausalLM.from_config(cfg).float().eval()
    with torch.no_grad():  # non-trivial norms and biases
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.generation_config.eos_token_id = None
    return model


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3"])
def tiny(request, tmp_path_factory):
    d = str(tmp_path_factory.mktemp(request.param))
    hf = tiny_hf(request.param)
    hf.save_pretrained(d)
    model, params = load_pretrained(d)
    return hf, model, params


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("qwen2_sampling"))
    hf = tiny_hf("qwen2")
    hf.save_pretrained(d)
    model, params = load_pretrained(d)
    return hf, model, params


def prompts_of(lengths, seed=0, vocab=VOCAB):
    rs = np.random.RandomState(seed)
    return [[int(t) for t in rs.randint(0, vocab, n)] for n in lengths]


def hf_greedy(hf, prompt, new, eos=None):
    x = torch.tensor([prompt])
    with torch.no_grad():
        out = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=new,
                          eos_token_id=eos, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def teacher_forced(model, params, prompt, completions, width):
    """Log-softmax of each completion's tokens after `prompt`, one forward pass for all rows.

    Completions are right-padded to `width` (causal: the padding cannot change earlier logits), so
    every call with the same prompt length reuses one compiled program.
    """
    ids = np.zeros((len(completions), len(prompt) + width), np.int32)
    ids[:, :len(prompt)] = prompt
    for r, c in enumerate(completions):
        ids[r, len(prompt):len(prompt) + len(c)] = c
    logp = np.asarray(jax.nn.log_softmax(model.apply({"params": params}, jnp.asarray(ids)), axis=-1))
    n = len(prompt)
    return [logp[r, n - 1:n - 1 + len(c)][np.arange(len(c)), np.asarray(c, int)] for r, c in enumerate(completions)], \
        logp


def test_greedy_matches_transformers_ragged(tiny, decode_kernel):
    hf, model, params = tiny
    prompts = prompts_of([3, 17, 9, 30])
    out = generate(model, params, prompts, max_new_tokens=12, temperature=0, decode_kernel=decode_kernel)
    assert out.tokens.shape == (4, 1, 12) and out.tokens.dtype == np.int32
    assert out.logprobs.shape == (4, 1, 12) and out.logprobs.dtype == np.float32
    assert out.lengths.shape == (4, 1) and out.lengths.dtype == np.int32
    for i, p in enumerate(prompts):
        assert out.tokens[i, 0].tolist() == hf_greedy(hf, p, 12), f"prompt {i} (length {len(p)})"
    np.testing.assert_array_equal(out.lengths, 12)


def test_greedy_eos_ends_completion(qwen2, decode_kernel):
    hf, model, params = qwen2
    prompts = prompts_of([5, 11, 8], seed=3)
    free = generate(model, params, prompts, max_new_tokens=10, temperature=0, decode_kernel=decode_kernel)
    eos = (int(free.tokens[0, 0, 3]), int(free.tokens[1, 0, 6]))  # two eos ids that will be hit
    out = generate(model, params, prompts, max_new_tokens=10, temperature=0, eos_token_ids=eos,
                   decode_kernel=decode_kernel)
    for i, p in enumerate(prompts):
        ref = hf_greedy(hf, p, 10, eos=list(eos))
        n = int(out.lengths[i, 0])
        stop = next((j + 1 for j, t in enumerate(ref) if t in eos), len(ref))
        assert n == stop
        assert out.tokens[i, 0, :n].tolist() == ref[:n]
        assert (out.tokens[i, 0, n:] == 0).all() and (out.logprobs[i, 0, n:] == 0).all()
    assert out.lengths[0, 0] <= 4 and out.lengths[1, 0] <= 7


@pytest.mark.parametrize("kw", [dict(temperature=1.0), dict(temperature=0.7, top_k=20),
                                dict(temperature=1.3, top_p=0.8), dict(temperature=1.0, top_k=40, top_p=0.9)])
def test_sampled_logprobs_equal_teacher_forced(qwen2, kw, decode_kernel):
    _, model, params = qwen2
    prompts = prompts_of([4, 19], seed=5)
    out = generate(model, params, prompts, max_new_tokens=20, num_samples=3, rng=jax.random.PRNGKey(7),
                   eos_token_ids=(5,), decode_kernel=decode_kernel, **kw)
    for i, p in enumerate(prompts):
        comps = [out.tokens[i, g, :int(out.lengths[i, g])].tolist() for g in range(3)]
        refs, logp = teacher_forced(model, params, p, comps, 20)
        for g, (comp, ref) in enumerate(zip(comps, refs)):
            n = len(comp)
            np.testing.assert_allclose(out.logprobs[i, g, :n], ref, atol=LOGPROB_TOL, rtol=0)
            if 5 in comp:
                assert comp.index(5) == n - 1
            if kw.get("top_k"):  # every token is within the top k of the model's distribution
                rows = logp[g, len(p) - 1:len(p) - 1 + n]
                kth = np.sort(rows, axis=-1)[:, -kw["top_k"]]
                assert (rows[np.arange(n), comp] >= kth).all()


def test_samples_differ_seed_reproduces_rows_independent(qwen2, decode_kernel):
    _, model, params = qwen2
    a, b, c = prompts_of([6, 9, 13], seed=8)
    kw = dict(max_new_tokens=16, num_samples=4, temperature=1.0, rng=jax.random.PRNGKey(3),
              decode_kernel=decode_kernel)
    out1 = generate(model, params, [a, b], **kw)
    rows = {tuple(r) for r in out1.tokens[0]}
    assert len(rows) == 4, "G samples of one prompt should differ at temperature 1"
    out2 = generate(model, params, [a, b], **kw)
    np.testing.assert_array_equal(out1.tokens, out2.tokens)
    np.testing.assert_array_equal(out1.logprobs, out2.logprobs)
    # Prompt 0's rows do not depend on what else is in the batch (nor on its prompt bucket).
    out3 = generate(model, params, [a, c, b, c, a], **kw)
    np.testing.assert_array_equal(out1.tokens[0], out3.tokens[0])
    other = generate(model, params, [a, b], **dict(kw, rng=jax.random.PRNGKey(4)))
    assert not np.array_equal(out1.tokens, other.tokens)


def test_fanout_rows_equal_single_sample_greedy(qwen2, decode_kernel):
    _, model, params = qwen2
    prompts = prompts_of([7, 21], seed=9)
    one = generate(model, params, prompts, max_new_tokens=8, temperature=0, decode_kernel=decode_kernel)
    many = generate(model, params, prompts, max_new_tokens=8, num_samples=3, temperature=0,
                    decode_kernel=decode_kernel)
    np.testing.assert_array_equal(many.tokens, np.repeat(one.tokens, 3, axis=1))
    np.testing.assert_allclose(many.logprobs, np.repeat(one.logprobs, 3, axis=1), atol=1e-6)


def test_no_recompile_within_bucket(qwen2, decode_kernel):
    _, model, params = qwen2
    kw = dict(max_new_tokens=10, num_samples=2, temperature=1.0, top_k=7, rng=jax.random.PRNGKey(0),
              decode_kernel=decode_kernel)
    generate(model, params, prompts_of([5, 12, 3], seed=10), **kw)
    n0 = compile_count()
    # New prompts, counts and max_new_tokens inside the same buckets (16 tokens, 4 prompts, 16 new).
    generate(model, params, prompts_of([14, 2, 9, 16], seed=11), **dict(kw, max_new_tokens=13))
    assert compile_count() == n0
    generate(model, params, prompts_of([1], seed=12), **dict(kw, rng=jax.random.PRNGKey(1)))
    assert compile_count() == n0 + 2  # one prompt is its own batch bucket: prefill + decode
    n1 = compile_count()
    generate(model, params, prompts_of([8], seed=13), **kw)
    generate(model, params, prompts_of([5, 6, 7], seed=14), **dict(kw, temperature=0.5))
    assert compile_count() == n1, "a second call in a seen bucket must not recompile"
    generate(model, params, prompts_of([40], seed=15), **kw)  # a longer prompt: a new bucket
    assert compile_count() == n1 + 2


def test_buckets():
    b = Buckets(prompt_lengths=(64, 256), batch_sizes=(8, 32), new_tokens=(128,))
    assert (b.prompt(10), b.prompt(64), b.prompt(65), b.prompt(300)) == (64, 64, 256, 512)
    assert (b.batch(1), b.batch(9), b.batch(33), b.batch(3, multiple=16)) == (8, 32, 64, 32)
    assert Buckets().new(17) == 32 and Buckets().prompt(3) == 16 and Buckets().batch(3) == 4


class CharTokenizer:
    """Token t decodes to chr(ord('a') + t % 26): enough to test host-side stop strings."""

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(ord("a") + int(t) % 26) for t in ids)


def test_stop_strings_cut_after_first_match(qwen2, decode_kernel):
    _, model, params = qwen2
    tok = CharTokenizer()
    prompts = prompts_of([6, 10], seed=16)
    free = generate(model, params, prompts, max_new_tokens=40, temperature=0, decode_kernel=decode_kernel)
    text0 = tok.decode(free.tokens[0, 0])
    stop = text0[9:11]  # first occurs at or before characters 9-10
    out = generate(model, params, prompts, max_new_tokens=40, temperature=0, stop_strings=[stop], tokenizer=tok,
                   stop_check_every=4, decode_kernel=decode_kernel)
    n = int(out.lengths[0, 0])
    assert stop in tok.decode(out.tokens[0, 0, :n]) and stop not in tok.decode(out.tokens[0, 0, :n - 1])
    assert n == text0.index(stop) + len(stop) and n <= 11
    np.testing.assert_array_equal(out.tokens[0, 0, :n], free.tokens[0, 0, :n])
    text1 = tok.decode(free.tokens[1, 0])
    expect1 = text1.index(stop) + len(stop) if stop in text1 else 40
    assert int(out.lengths[1, 0]) == expect1


@pytest.mark.parametrize("bad, match", [
    (dict(prompts=[]), "non-empty"),
    (dict(prompts=[[1, 2], []]), "empty"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=-3), "max_new_tokens"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(prompts=[[1] * 500]), "cache"),
    (dict(prompts=[[1, VOCAB]]), "outside"),
    (dict(temperature=-1.0), "temperature"),
])
def test_bad_input_raises_before_compiling(qwen2, bad, match, decode_kernel):
    _, model, params = qwen2
    kw = dict(prompts=[[1, 2, 3]], max_new_tokens=20, decode_kernel=decode_kernel)
    kw.update(bad)
    n0 = compile_count()
    with pytest.raises(ValueError, match=match):
        generate(model, params, kw.pop("prompts"), **kw)
    assert compile_count() == n0


@pytest.fixture(scope="module")
def mesh():
    """One mesh for the module: the sampler's compiled programs are kept per mesh, so both
    single-device references below reuse one compilation of the sharded programs."""
    return make_mesh({"data": 2, "fsdp": 2, "tensor": 2})  # heads over tensor, rows over data x fsdp


def test_sharded_mesh_matches_single_device(qwen2, mesh, decode_kernel):
    """The sharded run is XLA (the kernel is one device, "auto" falls back to XLA on a mesh); the
    single-device reference is each decode step."""
    _, model, params = qwen2
    assert len(jax.devices()) == 8
    prompts = prompts_of([5, 13, 8, 2], seed=17)
    ref = generate(model, params, prompts, max_new_tokens=10, num_samples=2, temperature=0,
                   decode_kernel=decode_kernel)
    out = generate(model, params, prompts, max_new_tokens=10, num_samples=2, temperature=0, mesh=mesh)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-5)
    sampled_ref = generate(model, params, prompts, max_new_tokens=10, num_samples=2, rng=jax.random.PRNGKey(2),
                           decode_kernel=decode_kernel)
    sampled = generate(model, params, prompts, max_new_tokens=10, num_samples=2, rng=jax.random.PRNGKey(2), mesh=mesh)
    np.testing.assert_array_equal(sampled.tokens, sampled_ref.tokens)


@pytest.fixture(scope="module")
def smollm2():
    """The embedded model, three chat prompts, and transformers' greedy completions of them (the
    torch model is loaded once for both decode steps and released before they run)."""
    from zeroplay.models import EmbeddedModelMissing, embedded_dir, load_tokenizer

    try:
        path = embedded_dir()
    except EmbeddedModelMissing as e:
        pytest.skip(str(e))
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    prompts = chat_prompts(tokenizer, ["What is 2+3?", "Name a colour.",
                                       [{"role": "user", "content": "Write one word about the sea, then stop."}]],
                           system="Be brief.")
    ref_ids = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "What is 2+3?"}],
                                            add_generation_prompt=True)["input_ids"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(path).float().eval()
    hf.generation_config.eos_token_id = None
    hf_out = [hf_greedy(hf, p, 12) for p in prompts]
    del hf
    model, params = load_pretrained("smollm2-135m-instruct")
    return model, params, prompts, list(ref_ids), hf_out


def test_embedded_smollm2_greedy_matches_transformers(smollm2, decode_kernel):
    model, params, prompts, ref_ids, hf_out = smollm2
    assert prompts[0] == ref_ids
    assert len({len(p) for p in prompts}) == 3
    out = generate(model, params, prompts, max_new_tokens=12, temperature=0, decode_kernel=decode_kernel)
    for i, p in enumerate(prompts):
        assert out.tokens[i, 0].tolist() == hf_out[i], f"prompt {i}"
