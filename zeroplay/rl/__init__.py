"""zeroplay.rl: the GRPO-family update, one policy per role or shared.

The self-play loop uses this surface:

    policies = Policies.from_config(config.rl)          # roles -> policies, PolicyConfig each
    mesh = zeroplay.parallel.mesh_from_config(config)
    state = create_state(params, policies.config("solver"), model.cfg, mesh)
    step = make_train_step(model, policies.config("solver"), mesh=mesh)
    adv = advantages.grpo(rewards, group_ids)           # or dr_grpo / rloo / reinforce_pp
    keep = advantages.band_filter(rewards, group_ids, 0.0, 1.0, inclusive=False)
    state, metrics = step(state, batch)                 # + ref_params when kl_coef > 0
    teacher = ema_update(teacher, state.params, ema_rate(k, K, a_start, a_end))

`batch` layout and token alignment: see `zeroplay.rl.train_step`. `PolicyState` (params,
opt_state, step, skipped) is a plain pytree of arrays for checkpointing.
"""
from zeroplay.rl import advantages
from zeroplay.rl.logprobs import logprobs_from_hidden, token_logprobs
from zeroplay.rl.losses import AGGREGATIONS, KL_ESTIMATORS, aggregate, kl_penalty, policy_loss
from zeroplay.rl.optim import PolicyConfig, make_optimizer, make_schedule
from zeroplay.rl.policy import (Policies, PolicyState, concat_batches, ema_rate, ema_update, init_policies,
                                init_policy_state)
from zeroplay.rl.train_step import check_batch, create_state, make_train_step, train_model

__all__ = ["advantages", "policy_loss", "aggregate", "kl_penalty", "AGGREGATIONS", "KL_ESTIMATORS",
           "token_logprobs", "logprobs_from_hidden", "PolicyConfig", "make_optimizer", "make_schedule",
           "Policies", "PolicyState", "init_policy_state", "init_policies", "ema_rate", "ema_update",
           "concat_batches", "make_train_step", "create_state", "check_batch", "train_model"]
