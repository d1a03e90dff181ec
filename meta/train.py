"""Train ABMLL: fit it by SVI over minibatches of tasks (`run_svi`), and the end-to-end recipe over a training
source that writes a checkpoint (`train_abmll`, what `loragen train meta` runs).

A plain loop rather than Lightning: one SVI step is one Pyro `svi.step` over a handful of tasks, each running the
base model once; Lightning's loop would add nothing but overhead and a second optimiser owner next to Pyro's.

Usage::

    with Bank.open("bank.duckdb") as bank:
        model, guide, history = train_abmll(BankSource(bank), MetaConfig(), "ckpt/abmll")
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Sequence

import pyro
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.optim import Adam
from tqdm.auto import tqdm

from loragen.bank.errors import ConfigError, TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import STORED, ClassificationProvider, Classifier, TaskSource, get_provider, provider_name
from loragen.meta.checkpoint import save_checkpoint
from loragen.meta.config import ABMLLConfig, MetaConfig, TrainConfig
from loragen.meta.data import MetaTask, make_batch, meta_tasks
from loragen.meta.guide import ABMLLGuide
from loragen.meta.likelihood import Likelihood
from loragen.meta.model import ABMLLModel, FactorClassifier, LoraLayout, inverse_softplus, weight_floor
from loragen.meta.plan import bank_plan, suite_plan

log = logging.getLogger(__name__)


def warm_start(guide: ABMLLGuide, tasks: Sequence[MetaTask], config: TrainConfig,
               progress: bool = True) -> list[float]:
    """Fit the amortized posterior mean to known task adapters (empirical-Bayes start for SVI).

    The global mean θ̂_loc moves to the adapters' mean, the prior scale to their per-entry spread (method of
    moments), and the amortization network learns description -> adapter (`config.warm_start`: "regression" by
    least squares on the full adapters, "pca" through their principal directions), which costs no base-model
    passes; SVI then corrects it with the real likelihood.

    Returns:
        The loss per step: the squared error relative to predicting the mean adapter ("regression"), or the
        encoder's error on the task coordinates relative to their variance followed, as the last entry, by the
        relative squared error of the fitted adapters ("pca").
    """
    known = [t for t in tasks if t.adapter is not None]
    if not known or config.warm_start_steps == 0:
        return []
    with torch.no_grad():
        # Empirical Bayes: the prior p(φ | θ) starts at the known adapters' mean and per-entry spread (at least c).
        adapters = torch.stack([t.adapter for t in known]).float()  # (N, D)
        guide.theta_loc.copy_(adapters.mean(0))
        if len(known) > 1:
            spread = adapters.std(0).clamp_min(1e-8)
            floor = guide.abmll.floor
            guide.theta_rho.copy_(inverse_softplus((spread - floor).clamp_min(floor * 0.1)))
    # θ̂_loc stays at the adapters' mean: the network explains the deviations from it.
    fit = _pca_warm_start if config.warm_start == "pca" else _regression_warm_start
    return fit(guide, known, adapters, config, progress)


def _regression_warm_start(guide: ABMLLGuide, known: Sequence[MetaTask], adapters: torch.Tensor,
                           config: TrainConfig, progress: bool) -> list[float]:
    """Adam on the encoder and the loc head, every wording of every task a row regressed onto its adapter."""
    emb = torch.cat([t.wordings() for t in known])  # (ΣP, E): every wording of every task
    target = torch.cat([t.adapter.float().expand(t.wordings().shape[0], -1) for t in known])  # (ΣP, D)
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


TANH_RANGE = 0.9  # the task coordinates are scaled into (-0.9, 0.9): the encoder's tanh output reaches them


def _pca_warm_start(guide: ABMLLGuide, known: Sequence[MetaTask], adapters: torch.Tensor,
                    config: TrainConfig, progress: bool) -> list[float]:
    """The loc head from the adapters' principal directions, then Adam on the encoder alone.

    The amortized mean is θ̂_loc + σ₀ ⊙ U h with a code h of `code_dim` entries, so the best it can do on the known
    adapters is their rank-`code_dim` approximation around the mean: the SVD Z = P S Qᵀ of the centred adapters
    gives it in closed form. U takes the top directions (Q_k, rescaled by σ₀ and by each coordinate's range) and the
    encoder then learns each wording's code, the task's coordinates P_k S_k: a regression onto `code_dim` numbers
    instead of D, which is what makes it fast for large layouts.
    """
    centred = adapters - adapters.mean(0)  # (N, D)
    k = min(guide.loc_head.weight.shape[1], len(known))
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min(N, D), D)
    coords = centred @ vh[:k].T  # (N, k) = P_k S_k
    scale = coords.abs().amax(0).clamp_min(1e-12) / TANH_RANGE  # per coordinate
    unit = guide.unit
    with torch.no_grad():
        head = torch.zeros_like(guide.loc_head.weight)  # (D, code_dim)
        head[:, :k] = (vh[:k] * scale[:, None] / unit).T
        guide.loc_head.weight.copy_(head)
    codes = torch.zeros(len(known), guide.loc_head.weight.shape[1])
    codes[:, :k] = coords / scale
    emb = torch.cat([t.wordings() for t in known])  # (ΣP, E)
    target = torch.cat([codes[i].expand(t.wordings().shape[0], -1) for i, t in enumerate(known)])  # (ΣP, code)
    x = (emb - guide.emb_mean) / guide.emb_std
    norm = target.var(0).sum().clamp_min(1e-12)
    opt = torch.optim.Adam(guide.encoder.parameters(), lr=config.warm_start_lr)
    losses = []
    for _ in tqdm(range(config.warm_start_steps), desc="warm start (pca)", leave=False, disable=not progress):
        loss = ((guide.encoder(x) - target) ** 2).sum(-1).mean() / norm
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():  # the fitted adapters' error, relative to predicting the mean adapter (as "regression")
        err = sum(((guide.posterior(t.wordings())[0] - t.adapter.float()) ** 2).sum().item() for t in known)
        rows = sum(t.wordings().shape[0] for t in known)
        losses.append(err / rows / centred.var(0).sum().clamp_min(1e-12).item())
    return losses


def run_svi(model: ABMLLModel, guide: ABMLLGuide, tasks: Sequence[MetaTask], config: TrainConfig,
            progress: bool = True) -> dict:
    """Fit ABMLL by SVI (TraceMeanField_ELBO: analytic KLs where Pyro has them) over minibatches of tasks.

    Clears Pyro's parameter store first, so a run never continues from another run's parameters by accident.

    Args:
        model, guide: the ABMLL model and guide (their β, γ are set from `config`).
        tasks: the training tasks. config: the training config.

    Returns:
        History: {"elbo": [-loss per step], "warm_start_mse": [...], "seconds": float}.

    Raises:
        ConfigError: no tasks, or a task without examples (a `ValueError`).
    """
    if not tasks or any(not t.examples for t in tasks):
        empty = [t.name for t in tasks if not t.examples][:5]
        raise ConfigError(f"ABMLL needs at least one task, and every task needs examples (none for {empty}); "
                          "import the tasks with their examples (`loragen bank tasks import MANIFEST`)")
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


def build_abmll(classifier: FactorClassifier | Likelihood, config: ABMLLConfig, base_model: str,
                seed: int = 0) -> tuple[ABMLLModel, ABMLLGuide]:
    """A fresh ABMLL model and guide for `classifier.model` (the layout and the floor c come from its weights).

    Raises:
        ConfigError: the model has no linear layer named in `config.target_modules`.
    """
    layout = LoraLayout.from_model(classifier.model, config, base_model)
    floor = weight_floor(classifier.model, layout, config.scale_floor)
    model = ABMLLModel(layout, floor, classifier, config)
    return model, ABMLLGuide(model, seed=seed)


def _spread(tasks: list[TaskRecord], n: int | None) -> list[TaskRecord]:
    """At most `n` of `tasks`, evenly spread over the list."""
    if not n or len(tasks) <= n:
        return tasks
    step = len(tasks) / n
    return [tasks[int(i * step)] for i in range(n)]


def train_abmll(source: TaskSource, config: MetaConfig, out: str | os.PathLike, *,
                max_tasks: int | None = None, classifier: Classifier | Likelihood | None = None,
                base_model: str | None = None, progress: bool = True) -> tuple[ABMLLModel, ABMLLGuide, dict]:
    """Train ABMLL on the source's in-bank tasks and write a checkpoint to `out`.

    The built-in suite's tasks (a registered provider's) train with that provider's examples and classifier. A
    user's tasks (examples stored in the bank) train with their stored examples and the likelihood their base model
    and kind call for: `PrototypeClassifier` over an encoder for classification tasks, the causal LM's token
    log-likelihood for generation tasks (`meta.plan`); the layout follows the bank's final adapters. Either way the
    source's final adapters that fit the layout warm-start the amortized posterior, and the checkpoint records the
    likelihood (kind, base model) so a generator can rebuild it.

    Args:
        source: in-bank tasks and their adapters (`BankSource(bank)`, `OracleCacheSource(dir)`, ...).
        config: model/train/generate configs.
        out: the checkpoint directory.
        max_tasks: train on at most this many tasks (evenly spread; for quick runs).
        classifier: the likelihood's classifier (or a `meta.likelihood` likelihood); default: a new one for the
            tasks (a user's bank uses it only when it is for the right base model and kind).
        base_model: a user's bank only: the base model to train for (default: the one most final adapters are for).
        progress: show progress bars.

    Returns:
        (model, guide, history).

    Raises:
        TaskDataError: no in-bank task, tasks of several providers, or a suite task no provider can give examples
            for.
        ConfigError: a user's bank without usable stored examples, without a base model to train for, or with tasks
            its base model cannot score (see `meta.plan.bank_plan`).
    """
    from loragen.bank.embed import TextEncoder
    from loragen.meta.condition import SlotDescriptionEncoder

    tasks = _spread([t for t in source.tasks() if t.split == "train"], max_tasks)
    if not tasks:
        raise TaskDataError(f"{source!r} has no in-bank (split 'train') task to train on: build the suite's bank "
                            "(`loragen bank build`), or import your tasks and their adapters (`loragen bank tasks "
                            "import MANIFEST`, then `loragen bank train`)")
    providers = sorted({str(provider_name(t)) for t in tasks})
    if len(providers) > 1:
        raise TaskDataError(f"the in-bank tasks come from several task providers {providers}; ABMLL trains with one "
                            "classifier, so train on one provider's tasks")
    torch.manual_seed(config.train.seed)
    if providers[0] in (STORED, "None") or not isinstance(get_provider(providers[0]), ClassificationProvider):
        # a user's bank, or a generative suite (smollm2-gen): the bank's examples and its base model's likelihood
        plan = bank_plan(source, tasks, config.model, base_model, classifier)
    else:
        plan = suite_plan(source, tasks, config.model, providers[0], classifier)
    config = dataclasses.replace(config, model=plan.model_config)
    model, guide = build_abmll(plan.likelihood, config.model, plan.spec.base_model, seed=config.train.seed)
    adapters = {k: a for k, a in plan.adapters.items()
                if tuple(a.modules) == model.layout.modules and a.r == config.model.r}
    log.info("ABMLL: %d tasks, %d with a known adapter for the warm start", len(plan.tasks), len(adapters))
    encoder = TextEncoder()
    slots = SlotDescriptionEncoder(encoder.encode, config.model.max_slots)
    train_tasks = meta_tasks(plan.tasks, slots, plan.examples, model.layout, adapters)
    history = run_svi(model, guide, train_tasks, config.train, progress=progress)
    extra = {"tasks": [t.name for t in plan.tasks], "warm_start_tasks": len(adapters), "encoder": encoder.name,
             "elbo": history["elbo"], "warm_start_mse": history["warm_start_mse"][-1:] or None,
             "seconds": history["seconds"]}
    save_checkpoint(model, guide, config, out, extra, likelihood=plan.spec)
    return model, guide, history
