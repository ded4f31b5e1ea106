"""Host-side verifiers: math answer checking, majority vote, sandboxed code execution.

Nothing here imports JAX or model code.
"""
