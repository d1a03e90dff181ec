"""Uncertainty scores for generated adapters, shared by the service and the CLI, for any base model.

Three signals, whatever the base model:

- description similarity: how close the description is to the nearest bank task (for the same base model when
  the bank knows which); low similarity means the generator extrapolates;
- predictive entropy: how unsure the adapter(s) are on inputs of the task;
- mutual information: how much sampled adapters disagree (needs more than one sample).

For an encoder (classification) the scoring is meta's (`meta.score.Scorer` over a `PrototypeClassifier`: entropy
over the labels, plus a calibrated confidence for the packaged MiniLM when a calibrator file is given). For a
causal LM it is `causal_lm_scores`: the same quantities over the output tokens of greedy completions.

The inputs the predictive distribution is evaluated on, first that applies:

- the user's own inputs (`generate --inputs`), else the request's example texts;
- otherwise validation inputs of the nearest bank task of the same base model (`BankSource(bank).data`: a user's
  task's examples stored in the bank, a suite task's rebuilt by its provider);
- otherwise no model-based scores, only the description similarity.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from loragen.bank.errors import LoragenError
from loragen.bank.lora import LoraAdapter

log = logging.getLogger(__name__)
PROBE_TEXTS = 16
MAX_NEW_TOKENS = 32
SCORE_CACHE = 256  # class-probability results remembered per classifier (meta.score.ProbabilityCache's size)

Scores = dict[str, float | bool | str | None]


def build_scorer(classifier: Any, bank: Any, calibrator: Path | None = None) -> Any | None:
    """meta's `Scorer` over the classifier and bank, or None when the meta package is not installed.

    The scorer is remembered (a few, least recently used dropped first) per classifier, bank and calibrator file
    (its path, size and modification time). Every scorer of one classifier shares one cache of class probabilities
    (`probability_cache`), so later requests, and the trust score's probe of the same request, reuse forward passes.
    """
    try:
        from loragen.meta.score import Scorer
    except ImportError:
        return None
    key = (id(classifier), id(bank), _file_key(calibrator))
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        # The entry holds the classifier and bank, so their ids cannot be reused by other objects while it lives.
        if scorer is not None and scorer.classifier is classifier and scorer.bank is bank:
            _SCORERS.move_to_end(key)
            return scorer
    scorer = Scorer.from_files(classifier, bank=bank, calibrator_path=calibrator,
                               cache=probability_cache(classifier))
    with _SCORERS_LOCK:
        _SCORERS[key] = scorer
        while len(_SCORERS) > _MAX_SCORERS:
            _SCORERS.popitem(last=False)
    return scorer


_MAX_SCORERS = 8
_SCORERS: OrderedDict[tuple[int, int, tuple | None], Any] = OrderedDict()
_SCORERS_LOCK = threading.Lock()


def probability_cache(classifier: Any) -> Any:
    """The one `meta.score.ProbabilityCache` of `classifier` (kept as long as the classifier lives)."""
    from loragen.meta.score import ProbabilityCache

    with _SCORERS_LOCK:
        cache = _CACHES.get(classifier)
        if cache is None:
            cache = _CACHES[classifier] = ProbabilityCache(SCORE_CACHE)
        return cache


_CACHES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _file_key(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        stat = Path(path).stat()
    except OSError:
        return (str(path), None, None)  # loading it reports the problem
    return (str(path), stat.st_size, stat.st_mtime_ns)


def nearest_task(bank: Any, description: str, base_model: str | None = None,
                 hits: Sequence[Any] | None = None, exclude: Sequence[str] = ()) -> tuple[float | None, str | None]:
    """(similarity, task) of the nearest bank task (its final adapter's description; generated and uploaded adapters
    are not tasks the bank knows), among adapters of `base_model` when given, skipping the tasks in `exclude`."""
    if bank is None:
        return None, None
    found = None if exclude else _first_fit(bank, hits or (), base_model)  # a search already made usually fits
    if found is None:
        found = _first_fit(bank, bank.search_text(description, k=8 if base_model else 1, exclude_tasks=tuple(exclude),
                                                  kind="final"), base_model)
    return found or (None, None)


def _first_fit(bank: Any, hits: Sequence[Any], base_model: str | None) -> tuple[float, str | None] | None:
    for hit in hits:
        if base_model is None or bank.record(hit.id).base_model == base_model:
            return float(hit.score), hit.task
    return None


def probe_inputs(bank: Any, description: str, examples: Sequence[tuple[str, Any]] | None,
                 hits: Sequence[Any] | None = None, inputs: Sequence[str] | None = None,
                 base_model: str | None = None) -> list[str]:
    """The texts to evaluate the adapters on (see the module docstring); `hits` saves a search already made."""
    if inputs:
        return list(inputs)[:PROBE_TEXTS]
    if examples:
        return [text for text, _ in examples][:PROBE_TEXTS]
    if bank is None:
        return []
    _, task = nearest_task(bank, description, base_model, hits)
    return list(_task_texts(bank, task)) if task else []


def _task_texts(bank: Any, task: str) -> tuple[str, ...]:
    key = (str(getattr(bank, "path", id(bank))), task)
    if key not in _TEXT_CACHE:
        _TEXT_CACHE[key] = _load_task_texts(bank, task)
    return _TEXT_CACHE[key]


_TEXT_CACHE: dict[tuple[str, str], tuple[str, ...]] = {}


def _load_task_texts(bank: Any, task: str) -> tuple[str, ...]:
    """Validation inputs of a bank task: texts of a classification task, inputs of a generation task."""
    from loragen.bank.tasks import BankSource, provider_name

    try:
        spec = bank.get_task(task)
        if provider_name(spec) is None:  # a task without data loragen can reach: nothing to probe with
            return ()
        return tuple(str(x) for x, _ in BankSource(bank).data(spec).val[:PROBE_TEXTS])
    except (LoragenError, KeyError, ValueError) as err:  # unknown task or provider, data it cannot rebuild
        log.debug("no probe texts for task %r: %s", task, err)
        return ()


def score(scorer: Any, description: str, adapters: Sequence[LoraAdapter], inputs: Sequence[str],
          num_labels: int = 2) -> Scores:
    """meta's uncertainty score as a flat dict (empty when there is no scorer or no input to score on)."""
    if scorer is None or not inputs:
        return {}
    result = scorer.score(description, list(adapters), list(inputs), num_labels=num_labels)
    return {k: v for k, v in result.to_dict().items() if v is None or isinstance(v, (bool, int, float, str))}


@torch.no_grad()
def causal_lm_scores(model: Any, tokenizer: Any, adapters: Sequence[LoraAdapter], inputs: Sequence[str],
                     max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 8) -> Scores:
    """Token-level uncertainty of causal-LM adapters on `inputs` (nats, mean per output token).

    The reference output of each input is the greedy completion with the first adapter (the point estimate when
    there is one adapter). At every reference token t, with p_s(. | prompt, y_<t) adapter s's next-token
    distribution and p̄ their mean: predictive entropy H[p̄], expected entropy mean_s H[p_s], mutual information
    H[p̄] - mean_s H[p_s] (None for one adapter: disagreement needs samples), and `confidence` the mean p̄ of the
    reference tokens (raw, not calibrated).

    Returns:
        The scores, or {} when there is no adapter, no input or no output token.
    """
    from loragen.bank.lora.functional import lora_applied

    if not adapters or not inputs:
        return {}
    device = next(model.parameters()).device
    on_device = [a.to(device) for a in adapters]
    with lora_applied(model, on_device[0]):
        refs = _greedy(model, tokenizer, list(inputs), max_new_tokens, device)
    sums = {"pe": 0.0, "ee": 0.0, "conf": 0.0, "n": 0}
    for start in range(0, len(refs), batch_size):
        ids, mask, where, targets = _scoring_batch(refs[start:start + batch_size], tokenizer, device)
        if targets.numel() == 0:
            continue
        mean, ent = 0.0, 0.0
        for adapter in on_device:
            with lora_applied(model, adapter):
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
            p = torch.softmax(logits[where], dim=-1)  # (N, V): the reference tokens' positions
            mean = mean + p / len(on_device)
            ent = ent + _entropy(p) / len(on_device)
        sums["pe"] += float(_entropy(mean).sum())
        sums["ee"] += float(ent.sum())
        sums["conf"] += float(mean.gather(-1, targets.unsqueeze(-1)).sum())
        sums["n"] += int(targets.numel())
    if not sums["n"]:
        return {}
    n = sums["n"]
    mi = max(0.0, (sums["pe"] - sums["ee"]) / n) if len(adapters) > 1 else None
    out: Scores = {"predictive_entropy": sums["pe"] / n, "expected_entropy": sums["ee"] / n,
                   "mutual_information": mi, "confidence": sums["conf"] / n, "calibrated": False,
                   "n_adapters": len(adapters), "n_inputs": len(inputs), "n_tokens": n}
    if any(isinstance(v, float) and not math.isfinite(v) for v in out.values()):
        raise LoragenError("the adapters give non-finite token probabilities; they are not usable on this model")
    return out


def sample_dispersion(adapters: list[LoraAdapter]) -> float:
    """Mean relative distance of the samples' ΔW from their mean (0: the samples agree).

    Computed from the factors, never materialising a ΔW: the Gram matrix of the samples' ΔW (all modules
    concatenated) has entries <B_i A_i, B_j A_j> = sum((B_iᵀ B_j) ⊙ (A_i A_jᵀ)) (r×r products instead of
    out×in ones), and distances to the mean follow from it (float64, so nearly equal samples keep their spread).
    """
    s = len(adapters)
    gram = torch.zeros(s, s, dtype=torch.float64)
    for m in adapters[0].modules:
        a = [ad.lora_A[m].double() * ad.scaling for ad in adapters]  # (r, in), the scaling folded in
        b = [ad.lora_B[m].double() for ad in adapters]  # (out, r)
        if len({t.shape for t in a}) == 1:  # one rank: every pair at once
            A, B = torch.stack(a), torch.stack(b)
            gram += (torch.einsum("xor,yos->xyrs", B, B) * torch.einsum("xrk,ysk->xyrs", A, A)).sum((-2, -1))
        else:
            gram += torch.tensor([[float(((b[i].T @ b[j]) * (a[i] @ a[j].T)).sum()) for j in range(s)]
                                  for i in range(s)], dtype=torch.float64)
    mean_sq = gram.sum() / s**2  # |mean ΔW|²
    dist_sq = gram.diagonal() - 2 * gram.sum(1) / s + mean_sq  # |ΔW_i - mean ΔW|²
    return float(dist_sq.clamp_min(0).sqrt().mean() / mean_sq.clamp_min(0).sqrt().clamp_min(1e-12))


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def _greedy(model: Any, tokenizer: Any, texts: list[str], max_new_tokens: int,
            device: torch.device) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, greedy output ids up to and including the first end-of-sequence) per input."""
    from loragen.bank.causal_lm import pad_id, prompt_ids

    pad, eos = pad_id(tokenizer), tokenizer.eos_token_id
    out = []
    for text in texts:  # one at a time: no padding, so each completion is exactly what `predict` gives
        prompt = prompt_ids(tokenizer, text)
        ids = torch.tensor([prompt], device=device)
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad, eos_token_id=eos)[0, len(prompt):].tolist()
        if eos is not None and eos in gen:
            gen = gen[:gen.index(eos) + 1]
        out.append((prompt, gen))
    return out


def _scoring_batch(refs: list[tuple[list[int], list[int]]], tokenizer: Any, device: torch.device):
    """Right-padded prompt + reference ids, the mask, the (B, T-1) positions that predict reference tokens, and
    those tokens."""
    from loragen.bank.causal_lm import pad_id

    width = max(len(p) + len(g) for p, g in refs)
    ids = torch.full((len(refs), width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros_like(ids)
    where = torch.zeros((len(refs), width - 1), dtype=torch.bool)
    for i, (prompt, gen) in enumerate(refs):
        n = len(prompt) + len(gen)
        ids[i, :n] = torch.tensor(prompt + gen)
        mask[i, :n] = 1
        where[i, len(prompt) - 1:n - 1] = True  # position t predicts token t + 1
    targets = ids[:, 1:][where]
    return ids.to(device), mask.to(device), where.to(device), targets.to(device)


def score_adapters(models: Any, base_model: str, description: str, adapters: Sequence[LoraAdapter],
                   inputs: Sequence[str], *, bank: Any = None, num_labels: int = 2,
                   calibrator: Path | None = None) -> Scores:
    """The uncertainty of `adapters` for `base_model` (a canonical id), as a flat dict.

    Args:
        models: an `api.base_models.BaseModels`; the base model is loaded only when there are inputs.

    Returns:
        description_similarity and nearest_task (with a bank), and the model-based scores when there are inputs
        (for an encoder: meta's, empty when meta is not installed).

    Raises:
        LoragenError: the base model cannot be loaded to score on (e.g. its directory has no tokenizer).
    """
    similarity, task = nearest_task(bank, description, base_model)
    scores: Scores = {"description_similarity": similarity, "nearest_task": task} if bank is not None else {}
    if not inputs:
        return scores
    try:
        loaded = models.get(base_model)
    except (OSError, ValueError) as err:
        raise LoragenError(f"cannot load base model {base_model} to score on: {err}") from None
    with loaded.lock:
        if loaded.causal:
            scores.update(causal_lm_scores(loaded.model, loaded.tokenizer, adapters, inputs))
        else:
            scorer = build_scorer(loaded.classifier, bank, calibrator)
            scores.update(score(scorer, description, adapters, inputs, num_labels))
    return scores
