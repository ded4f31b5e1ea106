"""Host-side verifiers: math answer checking, majority vote, sandboxed code execution.

- `math`: `extract_boxed`, `extract_answer_tag`, `extract_gsm8k`, `extract_answer`,
  `is_equivalent(pred, gold)` / `is_equivalent_batch(pairs)` (math-verify in killable worker
  processes, hard deadline per pair).
- `vote`: `majority_vote(answers, tie=..., empty=...)` with canonicalised answers.
- `code`: `run(program, input_expr)` / `run_batch(...)` in a sandbox (pre-started workers that
  fork a locked-down child per program) and AZR's checks (`check_deterministic`,
  `check_input_prediction`, `check_output_prediction`, `check_program_prediction`).

Nothing here imports JAX or model code, and importing this package starts no process: the
worker pools start on first use and stop at exit.
"""
