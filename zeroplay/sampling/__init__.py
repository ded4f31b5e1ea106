"""Sampling: the JAX-native rollout sampler and chat-template prompts.

    out = generate(model, params, prompts, max_new_tokens=128, num_samples=8, temperature=1.0,
                   eos_token_ids=(tokenizer.eos_token_id,), rng=jax.random.PRNGKey(0))
"""
from zeroplay.sampling.buckets import DEFAULT_BUCKETS, Buckets
from zeroplay.sampling.logits_processing import SamplingMode
from zeroplay.sampling.prompts import chat_prompts
from zeroplay.sampling.sampler import DecodeState, Plan, SampleOutput, compile_count, generate, prefill

__all__ = ["generate", "prefill", "Plan", "SampleOutput", "DecodeState", "compile_count", "chat_prompts", "Buckets",
           "DEFAULT_BUCKETS", "SamplingMode"]
