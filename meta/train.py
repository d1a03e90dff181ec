"""Train ABMLL by SVI over minibatches of tasks; checkpoints as safetensors + JSON (never pickles).

A plain loop rather than Lightning: one SVI step is one Pyro `svi.step` over a handful of tasks, each running the
base model once; Lightning's loop would add nothing but overhead and a second optimiser owner next to Pyro's.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.optim import Adam
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from loragen.bank._atomic import atomic_directory
from loragen.bank.errors import CheckpointError
from loragen.meta.config import MetaConfig, TrainConfig
from loragen.meta.guide import ABMLLGuide
from loragen.meta.model import ABMLLModel, FactorClassifier, LoraLayout, TaskBatch, inverse_softplus

log = logging.getLogger(__name__)
CHECKPOINT_WEIGHTS = "abmll.safetensors"
CHECKPOINT_CONFIG = "abmll.json"
FORMAT_VERSION = 1


@dataclass
class MetaTask:
    """One training task for ABMLL.

    Args:
        name: task name. description: its description (or one paraphrase).
        embedding: the description's embedding (embed_dim,), or one row per wording (P, embed_dim): each step
            then conditions on a random wording (paraphrase augmentation).
        examples: labelled (text, label) pairs the likelihood is evaluated on.
        support: examples for ABML refinement during training (used when inner_steps > 0).
        adapter: optional known adapter of the task as a flat vector (D,) (the bank's oracle), for the warm start.
        num_labels: how many labels the task has.
    """

    name: str
    description: str
    embedding: torch.Tensor
    examples: list[tuple[str, int]]
    support: list[tuple[str, int]] = field(default_factory=list)
    adapter: torch.Tensor | None = None
    num_labels: int = 2

    def wordings(self) -> torch.Tensor:
        """The embeddings as (P, embed_dim)."""
        return self.embedding if self.embedding.ndim == 2 else self.embedding.unsqueeze(0)


def make_batch(tasks: Sequence[MetaTask], n_examples: int, rng: random.Random, with_support: bool) -> TaskBatch:
    """A `TaskBatch` with a random subset of at most `n_examples` examples per task."""
    texts, labels, s_texts, s_labels = [], [], [], []
    for task in tasks:
        ex = rng.sample(task.examples, min(n_examples, len(task.examples)))
        texts.append([t for t, _ in ex])
        labels.append(torch.tensor([y for _, y in ex]))
        if with_support:
            sup = rng.sample(task.support, min(n_examples, len(task.support))) if task.support else []
            s_texts.append([t for t, _ in sup])
            s_labels.append(torch.tensor([y for _, y in sup], dtype=torch.long))
    emb = [t.wordings()[rng.randrange(t.wordings().shape[0])] for t in tasks]
    return TaskBatch(torch.stack(emb), texts, labels, s_texts, s_labels, [t.name for t in tasks],
                     [t.num_labels for t in tasks])


def warm_start(guide: ABMLLGuide, tasks: Sequence[MetaTask], config: TrainConfig,
               progress: bool = True) -> list[float]:
    """Regress the amortized posterior mean onto known task adapters (empirical-Bayes start for SVI).

    The global mean θ̂_loc moves to the adapters' mean, the prior scale to their per-entry spread (method of
    moments), and the amortization network learns description -> adapter
    by least squares, which costs no base-model passes; SVI then corrects it with the real likelihood.

    Returns:
        The mean squared error per step.
    """
    known = [t for t in tasks if t.adapter is not None]
    if not known or config.warm_start_steps == 0:
        return []
    emb = torch.cat([t.wordings() for t in known])  # (ΣP, E): every wording of every task
    target = torch.cat([t.adapter.float().expand(t.wordings().shape[0], -1) for t in known])  # (ΣP, D)
    with torch.no_grad():
        # Empirical Bayes: the prior p(φ | θ) starts at the known adapters' mean and per-entry spread (at least c).
        adapters = torch.stack([t.adapter for t in known]).float()  # (N, D)
        guide.theta_loc.copy_(adapters.mean(0))
        if len(known) > 1:
            spread = adapters.std(0).clamp_min(1e-8)
            floor = guide.abmll.floor
            guide.theta_rho.copy_(inverse_softplus((spread - floor).clamp_min(floor * 0.1)))
    # θ̂_loc stays at the adapters' mean: the network explains the deviations from it.
    params = [*guide.encoder.parameters(), *guide.loc_head.parameters()]
    opt = torch.optim.Adam(params, lr=config.warm_start_lr)
    norm = target.var(0).sum().clamp_min(1e-12)  # the MSE relative to predicting the mean adapter
    losses = []
    for _ in tqdm(range(config.warm_start_steps), desc="warm start", leave=False, disable=not progress):
        loc, _ = guide.posterior(emb)
        loss = ((loc - target) ** 2).sum(-1).mean() / norm
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def train(model: ABMLLModel, guide: ABMLLGuide, tasks: Sequence[MetaTask], config: TrainConfig,
          progress: bool = True) -> dict:
    """Fit ABMLL by SVI (TraceMeanField_ELBO: analytic KLs where Pyro has them) over minibatches of tasks.

    Clears Pyro's parameter store first, so a run never continues from another run's parameters by accident.

    Args:
        model, guide: the ABMLL model and guide (their β, γ are set from `config`).
        tasks: the training tasks. config: the training config.

    Returns:
        History: {"elbo": [-loss per step], "warm_start_mse": [...], "seconds": float}.

    Raises:
        ValueError: no tasks, or a task without examples.
    """
    if not tasks or any(not t.examples for t in tasks):
        raise ValueError("train needs at least one task, and every task needs labelled examples")
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    rng = random.Random(config.seed)
    model.beta, model.gamma = config.beta, config.gamma
    guide.inner_steps, guide.inner_lr = config.inner_steps, config.inner_lr
    start = time.perf_counter()
    guide.fit_standardisation(torch.cat([t.wordings() for t in tasks]))
    history = {"warm_start_mse": warm_start(guide, tasks, config, progress), "elbo": []}
    def per_param(module_name: str, param_name: str) -> dict:
        name = param_name.split("$$$")[-1]  # pyro.module names parameters "<module>$$$<name>"
        is_mean = name == "theta_loc" or name.startswith(("encoder.", "loc_head."))
        return {"lr": config.lr * (config.mean_lr_scale if is_mean else 1.0)}

    svi = SVI(model, guide, Adam(per_param), TraceMeanField_ELBO(num_particles=config.num_particles))
    bar = tqdm(range(config.steps), desc="ABMLL SVI", disable=not progress)
    for step in bar:
        batch_tasks = rng.sample(list(tasks), min(config.tasks_per_batch, len(tasks)))
        batch = make_batch(batch_tasks, config.examples_per_task, rng, with_support=config.inner_steps > 0)
        loss = svi.step(batch)
        history["elbo"].append(-loss / len(batch))
        if step % config.log_every == 0:
            recent = history["elbo"][-config.log_every:]
            bar.set_postfix(elbo_per_task=f"{sum(recent) / len(recent):.2f}")
    history["seconds"] = time.perf_counter() - start
    return history


# ---- checkpoints ---------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, model: ABMLLModel, guide: ABMLLGuide, config: MetaConfig,
                    extra: dict | None = None) -> Path:
    """Write `abmll.safetensors` (guide parameters, floor) and `abmll.json` (config, layout, extra) into `path`."""
    tensors = {f"guide.{k}": v.detach().contiguous().cpu() for k, v in guide.state_dict().items()}
    tensors["model.floor"] = model.floor.detach().cpu().contiguous()
    meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "layout": model.layout.to_json(),
            "extra": extra or {}}
    with atomic_directory(path, CHECKPOINT_CONFIG, CheckpointError) as tmp:  # a crash never leaves half of it
        save_file(tensors, str(tmp / CHECKPOINT_WEIGHTS))
        (tmp / CHECKPOINT_CONFIG).write_text(json.dumps(meta, indent=2))
    return Path(path)


def load_checkpoint(path: str | Path, classifier: FactorClassifier | None = None,
                    device: str | torch.device = "cpu") -> tuple[ABMLLModel, ABMLLGuide, MetaConfig, dict]:
    """Rebuild model and guide from `save_checkpoint`'s files.

    Args:
        path: the checkpoint directory. classifier: needed only for the likelihood (training, refinement).

    Raises:
        FileNotFoundError: the directory lacks abmll.json or abmll.safetensors.
    """
    path = Path(path)
    missing = [n for n in (CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS) if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not an ABMLL checkpoint (missing {missing}); train one with "
                                "`loragen train meta -o DIR`")
    meta = json.loads((path / CHECKPOINT_CONFIG).read_text())
    config = MetaConfig.from_dict(meta["config"])
    layout = LoraLayout.from_json(meta["layout"])
    tensors = load_file(str(path / CHECKPOINT_WEIGHTS), device=str(device))
    model = ABMLLModel(layout, tensors["model.floor"], classifier, config.model, config.train.beta,
                       config.train.gamma)
    guide = ABMLLGuide(model)
    guide.load_state_dict({k.removeprefix("guide."): v for k, v in tensors.items() if k.startswith("guide.")})
    return model.to(device), guide.to(device).eval(), config, meta.get("extra", {})
