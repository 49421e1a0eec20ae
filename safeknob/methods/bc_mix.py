"""``bc-mix``: behavioural cloning (imitation's BC) on the two experts' demonstrations mixed
at ratio alpha by transitions.

The mixed set keeps as many transitions as the demonstrations allow: ``round(alpha M)``
reckless and ``M - round(alpha M)`` safe transitions, drawn without replacement. The draws
are nested: every alpha takes a prefix of the same seeded permutation of each expert's
transitions, and every alpha starts from the same initial network and batch order, so
neighbouring alphas differ by the data mix, not by sampling noise (this keeps the response
curve monotone, which ``safeknob calibrate`` needs).
The cloned policy acts stochastically (sampling its action distribution), since its
argmax would snap every mixed state to the majority expert.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from imitation.algorithms import bc
from imitation.data import types
from imitation.util import logger as imit_logger
from stable_baselines3.common.policies import ActorCriticPolicy

from safeknob.evaluation.rollout import Agent, PolicyAgent
from safeknob.methods.base import BlendContext, Method
from safeknob.methods.registry import register
from safeknob.rl.training import ADAM_KWARGS, make_vec_env

N_EPOCHS = 30
BATCH = 64


def _flatten(trajs: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(obs, acts, next_obs) of all transitions, each of length sum(len(t))."""
    obs = np.concatenate([np.asarray(t.obs)[:-1] for t in trajs])
    acts = np.concatenate([np.asarray(t.acts) for t in trajs])
    nxt = np.concatenate([np.asarray(t.obs)[1:] for t in trajs])
    return obs, acts, nxt


def mix_transitions(
    safe: tuple[np.ndarray, ...],
    reck: tuple[np.ndarray, ...],
    alpha: float,
    rng: np.random.Generator,
) -> tuple[tuple[np.ndarray, ...], int, int]:
    """The arrays of a mixture with a fraction ``alpha`` of reckless transitions; also
    returns the numbers of reckless and safe transitions used."""
    n_s, n_r = len(safe[1]), len(reck[1])
    if alpha <= 0:
        m_r, m_s = 0, n_s
    elif alpha >= 1:
        m_r, m_s = n_r, 0
    else:
        total = int(min(n_r / alpha, n_s / (1 - alpha)))
        m_r = int(round(alpha * total))
        m_s = total - m_r
    # Prefixes of fixed permutations: the reckless set grows and the safe set shrinks with alpha.
    i_r = rng.permutation(n_r)[:m_r]
    i_s = rng.permutation(n_s)[:m_s]
    mixed = tuple(np.concatenate([r[i_r], s[i_s]]) for r, s in zip(reck, safe, strict=True))
    return mixed, m_r, m_s


def make_policy(observation_space, action_space, net_arch) -> ActorCriticPolicy:
    return ActorCriticPolicy(
        observation_space, action_space, lr_schedule=lambda _: 1e-3, net_arch=list(net_arch)
    )


@register(
    "bc-mix",
    cost=2,
    summary="behavioural cloning on the demonstrations mixed at ratio alpha",
)
class BCMixMethod(Method):
    def steps(self, ctx: BlendContext) -> int:
        return N_EPOCHS

    def _spaces(self, ctx: BlendContext):
        venv = make_vec_env(ctx.run.experiment.env, 1)
        spaces = venv.observation_space, venv.action_space
        venv.close()
        return spaces

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        torch.manual_seed(ctx.stream("agent", self.name, alpha))
        safe, _ = ctx.store.demos("safe")
        reck, _ = ctx.store.demos("reckless")
        (obs, acts, nxt), m_r, m_s = mix_transitions(
            _flatten(safe),
            _flatten(reck),
            alpha,
            np.random.default_rng(ctx.stream("permutation", self.name)),
        )
        rng = np.random.default_rng(ctx.stream("sampler", self.name, alpha))
        obs_space, act_space = self._spaces(ctx)
        if obs.dtype.kind == "f" and np.issubdtype(np.dtype(obs_space.dtype), np.integer):
            obs, nxt = obs.astype(np.int64), nxt.astype(np.int64)
        trans = types.Transitions(
            obs=obs,
            acts=acts,
            infos=np.array([{}] * len(acts), dtype=object),
            next_obs=nxt,
            dones=np.zeros(len(acts), dtype=bool),
        )
        net_arch = list(ctx.run.experiment.ppo.net_arch)
        policy = make_policy(obs_space, act_space, net_arch)
        with tempfile.TemporaryDirectory() as logdir:
            trainer = bc.BC(
                observation_space=obs_space,
                action_space=act_space,
                rng=rng,
                policy=policy,
                demonstrations=trans,
                batch_size=min(BATCH, len(trans)),  # tiny datasets: one full batch
                optimizer_kwargs=dict(ADAM_KWARGS),
                device="cpu",
                custom_logger=imit_logger.configure(logdir, format_strs=[]),
            )

            def epoch_done() -> None:
                if ctx.progress is not None and ctx.task is not None:
                    ctx.progress.update(ctx.task, advance=1)

            trainer.train(n_epochs=N_EPOCHS, progress_bar=False, on_epoch_end=epoch_done)
        torch.save(trainer.policy.state_dict(), folder / "policy.pt")
        return {
            "net_arch": net_arch,
            "epochs": N_EPOCHS,
            "transitions_reckless": m_r,
            "transitions_safe": m_s,
        }

    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        obs_space, act_space = self._spaces(ctx)
        policy = make_policy(obs_space, act_space, meta["net_arch"])
        policy.load_state_dict(
            torch.load(folder / "policy.pt", map_location="cpu", weights_only=True)
        )
        policy.set_training_mode(False)
        return PolicyAgent(policy, deterministic=False)
