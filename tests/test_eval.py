"""zeroplay.eval and zeroplay.evaluation: TFDS builders over the shared benchmark files, scoring of
hand-made responses for every benchmark kind, the command line on a tiny random HF model, and the
one-line errors for bad input."""
import json
import os
import subprocess
import sys

import pytest

from zeroplay.evaluation import BENCHMARKS, Item, load_benchmark, resolve, score
from zeroplay.evaluation.benchmarks import default_data_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = default_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data (the benchmark files) is missing")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # One TFDS cache for the whole test session, never the user's.
    monkeypatch.setenv("ZEROPLAY_CACHE", str(tmp_path_factory.getbasetemp() / "zeroplay_cache"))


# -- benchmarks ------------------------------------------------------------------------------------

@needs_data
def test_every_benchmark_reads_through_its_tfds_builder():
    for name in BENCHMARKS:
        items = load_benchmark(name, limit=2)
        assert len(items) == 2 and all(it.question and it.answer for it in items), name
        assert [it.index for it in items] == [0, 1], name  # file order, no shuffling


@needs_data
def test_counts_and_gold_answers():
    gsm = load_benchmark("gsm8k")
    assert len(gsm) == 1319 and gsm[0].answer == "18"
    assert len(load_benchmark("aime24")) == 30 and load_benchmark("aime24", limit=1)[0].answer == "204"
    amc = load_benchmark("amc23")
    assert len(amc) == 40 and amc[0].answer == "27"  # 27.0 in the file
    he = load_benchmark("humaneval")
    assert len(he) == 164 and he[0].meta["entry_point"] == "has_close_elements"
    crux = load_benchmark("cruxeval", limit=1)[0]
    assert crux.meta["input"] == "[1, 1, 3, 1, 3, 1]" and crux.answer.startswith("[(4, 1)")


def test_rg_items_are_fixed_and_held_out():
    a = load_benchmark("rg:basic_arithmetic", limit=3)
    b = load_benchmark("rg:basic_arithmetic", limit=3)
    assert [x.question for x in a] == [x.question for x in b] and len(a) == 3
    easy = load_benchmark("rg:basic_arithmetic:min_terms=2:max_terms=2", limit=2)
    assert all(it.meta["entry"]["metadata"]["num_terms"] == 2 for it in easy)


# -- scoring ---------------------------------------------------------------------------------------

def test_score_math_and_gsm8k():
    items = [Item(0, "1/2 + 1/2?", "1"), Item(1, "x", "\\frac{1}{2}")]
    ex, sc = score("math500", items, [["so \\boxed{1}", "\\boxed{2}"], ["\\boxed{0.5}", "no box 0.5"]])
    assert sc == [[1.0, 0.0], [1.0, 0.0]] and ex[1] == ["0.5", None]
    g = [Item(0, "q", "1234")]
    ex, sc = score("gsm8k", g, [["she makes $1,234 a day.", "\\boxed{1234}", "1233", "#### 1,234"]])
    assert sc == [[1.0, 1.0, 0.0, 1.0]] and ex[0][0] == "1234"


def test_score_cruxeval_output_and_input():
    code = "def f(xs):\n    return sorted(set(xs))"
    it = Item(0, code, "[1, 2]", {"code": code, "input": "[2, 1, 2]"})
    responses = [["[ANSWER][1, 2][/ANSWER]", "[ANSWER]assert f([2, 1, 2]) == [1, 2][/ANSWER]",
                  "[ANSWER][2, 1][/ANSWER]", "nothing"]]
    _, sc = score("cruxeval", [it], responses)
    assert sc == [[1.0, 1.0, 0.0, 0.0]]
    ex, sc = score("cruxeval_input", [it], [["[ANSWER]f([1, 2, 1])[/ANSWER]", "[ANSWER][2, 1][/ANSWER]",
                                             "[ANSWER]f([3])[/ANSWER]", "[ANSWER]f(__import__('os'))[/ANSWER]"]])
    assert sc == [[1.0, 1.0, 0.0, 0.0]] and ex[0][0] == "[1, 2, 1]"


def test_score_humaneval_executes_the_tests():
    meta = {"prompt": "def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n", "entry_point": "add",
            "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}
    it = Item(0, meta["prompt"], "    return a + b\n", meta)
    right = "Here:\n```python\ndef add(a, b):\n    return a + b\n```"
    body = "    return a + b\n"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    _, sc = score("humaneval", [it], [[right, body, wrong, "```python\ndef add(a, b):\n    while True: pass\n```"]],
                  timeout_s=2.0)
    assert sc == [[1.0, 1.0, 0.0, 0.0]]


def test_score_reasoning_gym_uses_its_own_scorer():
    items = load_benchmark("rg:basic_arithmetic", limit=2)
    gold = items[0].answer
    ex, sc = score("rg:basic_arithmetic", items, [[f"\\boxed{{{gold}}}", f"so it is {gold}.", "\\boxed{x}"],
                                                   ["I don't know"] * 3])
    assert sc[0] == [1.0, 1.0, 0.0] and sc[1] == [0.0] * 3 and ex[0][1] == gold


def test_protocols():
    assert resolve("azr").temperature == 0 and resolve("azr").samples_for("aime24") == 1
    cp = resolve("cpmobius")
    assert (cp.temperature, cp.top_p, cp.samples_for("aime24"), cp.samples_for("amc23")) == (0.7, 0.9, 32, 10)
    tt = resolve("ttrl", top_p=0.5)
    assert (tt.samples_for("math500"), tt.temperature, tt.top_p) == (16, 0.6, 0.5)
    assert resolve("cpmobius", num_samples=2).samples_for("aime24") == 2
    with pytest.raises(ValueError):
        resolve("nope")


# -- command line -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A tiny random Qwen2 HF folder (safetensors) with the byte tokenizer."""
    torch = pytest.importorskip("torch")
    import transformers

    from zeroplay.models.byte_tokenizer import VOCAB_SIZE, byte_tokenizer

    d = tmp_path_factory.mktemp("tiny_hf")
    cfg = transformers.Qwen2Config(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                                   tie_word_embeddings=True, eos_token_id=256, pad_token_id=257)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(d, safe_serialization=True)
    byte_tokenizer().save_pretrained(d)
    return str(d)


def _cli(*args, env_cache=None, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    if env_cache:
        env["ZEROPLAY_CACHE"] = env_cache
    return subprocess.run([sys.executable, "-m", "zeroplay.eval", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


@needs_data
def test_cli_on_a_tiny_model_writes_a_consistent_report(tiny_hf, tmp_path):
    out = tmp_path / "report.json"
    r = _cli("--model", tiny_hf, "--benchmarks", "gsm8k", "--limit", "3", "--num_samples", "2",
             "--temperature", "1.0", "--max_new_tokens", "8", "--out", str(out), "--no_progress",
             env_cache=os.environ["ZEROPLAY_CACHE"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "gsm8k" in r.stdout and "accuracy" in r.stdout
    rep = json.loads(out.read_text())
    assert rep["protocol"]["name"] == "default" and rep["protocol"]["temperature"] == 1.0
    for name in ("gsm8k",):
        b = rep["benchmarks"][name]
        assert b["n"] == 3 and b["num_samples"] == 2 and len(b["items"]) == 3
        assert 0.0 <= b["accuracy"] <= 1.0
        per = [c for rec in b["items"] for c in rec["correct"]]
        assert len(per) == 6 and b["accuracy"] == pytest.approx(sum(per) / 6)
        assert b["pass@2"] == pytest.approx(sum(any(rec["correct"]) for rec in b["items"]) / 3)
        rec = b["items"][0]
        assert rec["prompt"] and len(rec["responses"]) == 2 and len(rec["extracted"]) == 2
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".report-")]  # no temp file left


@pytest.mark.parametrize("args, message", [
    (["--model", "{hf}", "--benchmarks", "gsm9k"], "unknown benchmark 'gsm9k'"),
    (["--model", "{hf}", "--benchmarks", "rg:no_such_task", "--limit", "1"], "reasoning-gym task 'no_such_task'"),
    (["--model", "{hf}", "--benchmarks", "gsm8k", "--data_dir", "/no/such/dir"], "--data_dir /no/such/dir"),
    (["--model", "{hf}", "--benchmarks", "gsm8k", "--data_dir", "{tmp}"], "no file"),
    (["--model", "{tmp}/nope", "--benchmarks", "rg:basic_arithmetic", "--limit", "1"], "no such folder"),
    (["--model", "{run}", "--benchmarks", "rg:basic_arithmetic", "--limit", "1"], "no checkpoints"),
    (["--model", "{hf}", "--benchmarks", "gsm8k", "--protocol", "xyz"], "unknown protocol 'xyz'"),
])
def test_bad_input_is_one_line(args, message, tiny_hf, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(_tiny_run_config()))
    args = [a.format(hf=tiny_hf, tmp=tmp_path, run=run) for a in args]
    r = _cli(*args, "--no_progress", env_cache=os.environ["ZEROPLAY_CACHE"])
    assert r.returncode != 0
    err = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith(("WARNING", "I0", "W0"))]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def _tiny_run_config():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_azr_config", os.path.join(ROOT, "configs", "azr.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config("tiny").to_dict()


def test_a_run_folder_restores_the_roles_policy(tmp_path):
    """A run folder (config.json + Orbax checkpoint of `policy/<name>`) and one of its step folders
    both give the saved params; --role picks the policy; a wrong role is one line."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from zeroplay.checkpoint import Checkpointer
    from zeroplay.evaluation.models import ModelPathError, load_for_eval
    from zeroplay.models import ModelConfig, abstract_params
    from zeroplay.rl.optim import make_optimizer
    from zeroplay.rl.policy import init_policy_state
    from zeroplay.runconfig import parse

    raw = _tiny_run_config()
    cfg = parse(raw)
    spec = cfg.policies["policy"]
    mcfg = ModelConfig(**spec.model.shape, dtype=jnp.float32, param_dtype=jnp.float32,
                       scan_layers=spec.model.scan_layers)
    # Built from shapes on the host: no XLA compilation (slow on a busy 2-core machine).
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape).astype(np.float32)),
                          abstract_params(mcfg))
    state_abs = jax.eval_shape(lambda p: init_policy_state(p, make_optimizer(spec.train)), params)
    state = jax.tree.map(lambda s: jnp.asarray(np.zeros(s.shape, s.dtype)), state_abs).replace(params=params)
    run = tmp_path / "run"
    with Checkpointer(str(run / "checkpoints"), keep=None, async_save=False) as ck:
        ck.save(3, {"policy/policy": state}, {"step": 3}, force=True)
    (run / "config.json").write_text(json.dumps(raw, default=str))
    for path in (str(run), str(run / "checkpoints" / "3")):
        model, got, tok, info = load_for_eval(path, role="proposer")
        assert info["step"] == 3 and info["policy"] == "policy" and tok.eos_token_id == 256
        same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))), params, got)
        assert all(jax.tree.leaves(same))
    assert model.cfg.vocab_size == 258
    with pytest.raises(ModelPathError, match="--role critic"):
        load_for_eval(str(run), role="critic")


def test_loop_evaluator_samples_through_the_loop_context(tmp_path):
    """The training loop's hook: samples via ctx.sample(role, prompts, n, Sampling) with the
    protocol's settings and returns {benchmark: accuracy}; the full report goes to report_dir."""
    import types

    import numpy as np

    from zeroplay.evaluation import loop_evaluator
    from zeroplay.games import Completion

    items = load_benchmark("rg:basic_arithmetic", limit=2)
    calls = []

    def sample(role, prompts, n, sampling):
        calls.append((role, len(prompts), n, sampling))
        out = []
        for p in prompts:
            text = bytes(p).decode()
            gold = items[0].answer if items[0].question in text else "nope"
            out.append([Completion(tokens=[1], logprobs=np.zeros(1, np.float32), text=f"\\boxed{{{gold}}}",
                                   finished=True)] * n)
        return out

    ev = loop_evaluator(["rg:basic_arithmetic"], "ttrl", limit=2, report_dir=str(tmp_path))
    ctx = types.SimpleNamespace(sample=sample, chat=None, encode=lambda s: list(s.encode()))
    assert ev(5, ctx) == {"rg:basic_arithmetic": 0.5}
    role, n_prompts, n, s = calls[0]
    assert (role, n_prompts, n, s.temperature, s.top_p, s.max_new_tokens) == ("solver", 2, 16, 0.6, 0.95, 3072)
    rep = json.loads((tmp_path / "eval_5.json").read_text())
    assert rep["step"] == 5 and rep["benchmarks"]["rg:basic_arithmetic"]["pass@16"] == 0.5


def test_benchmark_names_split_on_commas_outside_settings():
    from zeroplay.eval import split_names

    rg = "rg:basic_arithmetic:operators=('+','-'):allow_negation=False"
    assert split_names(f"{rg},gsm8k, math500") == [rg, "gsm8k", "math500"]
    assert split_names("rg:chain_sum:operators=['+', '-']") == ["rg:chain_sum:operators=['+', '-']"]
    assert split_names("gsm8k,,") == ["gsm8k"]
