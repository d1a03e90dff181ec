"""The trust score `generate` prints: the expected accuracy (exact match for generation) of the adapter on the
described task, with an interval, from `meta.trust.TrustModel` fitted by `loragen trust fit`.

Label-free features of one generation (each None when it cannot be computed; the model then uses the features
present, see `meta.trust`):

    bank_similarity     cosine of the description to the nearest bank description (same base model); without a
                        bank or a bank task of that base model, to the nearest built-in suite task's
                        (`api.suite_neighbours`: the suite is the bank the shipped trust files were fitted on), whose
                        inputs are then the probe texts
    train_similarity    cosine to the nearest of the generator's training wordings (stored in the trust file)
    weight_similarity   cosine of the adapter to the nearest bank adapter in weight-embedding space
    mutual_information  disagreement of sampled adapters (cvae, abmll) on the probe texts: the request's own
                        samples (`--samples N`); a calibration case draws CALIBRATION_SAMPLES, so its rows carry it
    posterior_spread    relative spread of those samples' ΔW (`api.uncertainty.sample_dispersion`)
    entropy_probe / max_prob_probe   predictive entropy and max probability on the nearest bank task's inputs
    entropy_own / max_prob_own       the same on the user's unlabeled inputs (`--inputs`)
    balance_own         entropy of the adapter's mean predicted class distribution on those inputs, over log K:
                        near 0 when it gives every input the same label (an adapter collapsed to one class, the
                        usual way a confident adapter sits at chance), 1 when its labels are evenly spread
    disagreement        fraction of probe texts where the other methods' adapters predict another label
    example_accuracy    accuracy on the user's labelled examples, shrunk (`meta.trust.shrunk_accuracy`)
    labels_given, chance   1 when label names were given; 1/K (0 for a generation task: exact match)

mutual_information and disagreement are measured on the probe texts when there are, else on the user's inputs.
A request for one adapter is scored without extra samples: on the shipped generators' calibration cases the two
sample features moved the cross-validated error by under 0.01 (`loragen trust refit --without mutual_information
--without posterior_spread`), while drawing and running 4 samples was most of a scored CVAE request's cost
(bench/results/load_scored*.json).
The trust file of cvae and abmll is `CHECKPOINT/trust.json`; retrieval's is `<bank file>.trust-retrieve.json`.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loragen.api.probe import Probe
from loragen.api.uncertainty import PROBE_TEXTS, _task_texts, nearest_task, sample_dispersion
from loragen.bank.errors import LoragenError
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora import LoraAdapter

if TYPE_CHECKING:  # meta is imported where it is used: a bank-only install still serves retrieval
    from loragen.api.suite_neighbours import SuiteNeighbours
    from loragen.meta.trust import TrustModel

log = logging.getLogger(__name__)
LOW = 0.7
CALIBRATION_SAMPLES = 4  # samples a calibration case draws for the spread features (`trust_samples`)
SAMPLED = ("cvae", "abmll")  # methods whose samples differ (retrieval has one answer per description)
FIT_HINT = "loragen trust fit --bank BANK --method {method}{ckpt} --split heldout_task"
# The trust entry of a service request that asked for score=off: said plainly, never a made-up number.
NOT_SCORED: dict[str, float | bool | str | None] = {
    "expected": None, "low": None, "high": None, "calibrated": False,
    "advice": "not scored: the request asked for score=off (send score=inline, or deferred and GET its scores_url)"}


def trust_path(method: str, checkpoint: Path | None, bank_path: Path | None) -> Path | None:
    """Where `method`'s trust file lives (None: nowhere to look)."""
    if method == "retrieve":
        return None if bank_path is None else Path(bank_path).with_name(Path(bank_path).name + ".trust-retrieve.json")
    return None if checkpoint is None else Path(checkpoint) / "trust.json"


def load_trust(path: Path | None) -> TrustModel | None:
    """The trust model at `path`, or None when there is none or it is unreadable (logged).

    Parsed once per file version (path, modification time, size): a service reads it on every request.
    """
    if path is None or not path.is_file():
        return None
    stat = path.stat()
    return _load_trust(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _load_trust(path: Path, mtime_ns: int, size: int) -> TrustModel | None:
    try:
        from loragen.meta.trust import TrustModel

        return TrustModel.load(path)
    except (ValueError, KeyError, OSError, ImportError) as err:
        log.warning("ignoring trust file %s: %s", path, err)
        return None


@dataclass(frozen=True)
class Trust:
    """The trust score of one generation: expected accuracy and interval, or why there is none.

    Attributes:
        expected / low / high: None when not calibrated. calibrated: a fitted trust file was used.
        advice: what helps when the score is low, or how to calibrate; "" otherwise.
    """

    method: str
    expected: float | None = None
    low: float | None = None
    high: float | None = None
    calibrated: bool = False
    advice: str = ""
    target: str = "accuracy"

    def to_dict(self) -> dict[str, float | bool | str | None]:
        return {"expected": self.expected, "low": self.low, "high": self.high, "calibrated": self.calibrated,
                "advice": self.advice}

    def line(self) -> str:
        """The one line `generate` prints."""
        if not self.calibrated:
            return f"trust: {self.advice}"
        what = "accuracy" if self.target == "accuracy" else "exact match"
        note = f"{self.method}; low: {self.advice}" if self.expected < LOW else self.method
        return f"trust: expected {what} {self.expected:.2f} [{self.low:.2f}, {self.high:.2f}] ({note})"


def not_calibrated(method: str, why: str, checkpoint: Path | None = None) -> Trust:
    ckpt = f"={checkpoint}" if checkpoint is not None and method != "retrieve" else ("" if method == "retrieve"
                                                                                     else "=CKPT")
    return Trust(method, advice=f"not calibrated for this generator ({why}); fit one with "
                 f"`{FIT_HINT.format(method=method, ckpt=ckpt)}`")


def advice(request: GenerationRequest, features: Mapping[str, float | None], target: str) -> str:
    """What would raise a low score, plainly."""
    tips = []
    if target == "accuracy" and not request.labels:
        tips.append("add label names with --labels")
    if target == "accuracy" and not request.examples:
        tips.append("8 examples with --examples")
    if target == "accuracy" and features.get("balance_own") is None:
        tips.append("16 unlabeled inputs of the task with --inputs (\"inputs\" in a service request), so the score "
                    "can check the adapter does not give them all one label")
    if (features.get("bank_similarity") or 0.0) < 0.6:
        tips.append("import a related task into the bank (`loragen bank import`)")
    return " or ".join(tips) or "the adapter is unlikely to do well on this task; check it on labelled data"


def features(request: GenerationRequest, adapters: Sequence[LoraAdapter], *, probe: Probe | None, bank: Any = None,
             model: TrustModel | None = None, samples: Sequence[LoraAdapter] = (),
             peers: Mapping[str, LoraAdapter] | None = None, inputs: Sequence[str] | None = None,
             exclude: frozenset[str] = frozenset(), encode: Callable[[str], Any] | None = None,
             neighbours: Callable[[], SuiteNeighbours | None] | None = None) -> dict[str, float | None]:
    """The label-free features of one generation (see the module docstring); any may be None.

    Args:
        adapters: the generated adapters, the point estimate first. samples: extra samples for the spread (when
            `adapters` holds one). peers: other methods' point adapters for the same request.
        inputs: the user's unlabeled inputs. exclude: bank tasks to ignore as neighbours (calibration only).
        encode: description -> L2-normalised embedding (default: the bank's encoder).
        neighbours: returns the built-in suite's tasks (`api.suite_neighbours`), asked for only when there is no
            bank or it has no task of the request's base model: they are then the description neighbours and give
            the probe texts (`encode` is required without a bank).
    """
    k = request.num_labels
    generation = (probe is not None and probe.causal is not None) or request.generation_examples
    # chance: what a guess scores (1/K classes; 0 exact match for a generation task)
    out: dict[str, float | None] = {"chance": 0.0 if generation else 1.0 / k,
                                    "labels_given": float(bool(request.labels))}
    task = None
    if bank is not None:
        similarity, task = nearest_task(bank, request.description, request.base_model, exclude=tuple(exclude))
        out["bank_similarity"] = None if similarity is None else min(1.0, similarity)
        # among the bank's trained adapters, as in calibration: a generated copy of this very adapter is no neighbour
        hits = bank.search_adapter(adapters[0], k=1, exclude_tasks=tuple(exclude), kind="final")
        out["weight_similarity"] = float(hits[0].score) if hits else None
        encode = encode or (lambda text: bank.encoder.encode([text])[0])
    embedding = encode(request.description) if encode is not None else None
    suite = neighbours() if task is None and neighbours is not None and embedding is not None else None
    found = suite.nearest(embedding, exclude) if suite is not None else None
    if found is not None:
        out["bank_similarity"], task = min(1.0, found[0]), found[1]
    if model is not None and embedding is not None:
        out["train_similarity"] = model.reference_similarity(embedding)
    pool = list(adapters) if len(adapters) > 1 else [*adapters, *samples]
    out["posterior_spread"] = sample_dispersion(pool) if len(pool) > 1 else None
    if probe is None:
        return out
    probe_texts = [] if not task else list(suite.probe_texts(task) if suite is not None else _task_texts(bank, task))
    primary = None
    # the user's first PROBE_TEXTS inputs, as many as the calibration cases had (`api.trust_fit.collect`)
    for name, texts in (("own", list(inputs or [])[:PROBE_TEXTS]), ("probe", probe_texts)):
        if texts:
            st = probe.stats(pool, texts, k)
            out[f"entropy_{name}"], out[f"max_prob_{name}"] = st["entropy"], st["max_prob"]
            if name == "own":  # the user's task's inputs: their labels should spread (a probe task's need not)
                out["balance_own"] = st["balance"]
            if primary is None or name == "probe":
                primary = (st, texts)
    if primary is not None:
        st, texts = primary
        out["mutual_information"] = st["mi"]
        out["disagreement"] = _disagreement(probe, st["preds"], peers or {}, texts, k)
    from loragen.meta.trust import shrunk_accuracy

    right = probe.correct(adapters[0], request.examples or (), k)
    out["example_accuracy"] = None if right is None else shrunk_accuracy(right, len(request.examples), k,
                                                                        chance=out["chance"])
    return out


def _disagreement(probe: Probe, preds: list[int] | None, peers: Mapping[str, LoraAdapter], texts: list[str],
                  k: int) -> float | None:
    if preds is None or not peers:
        return None
    rates = []
    for adapter in peers.values():
        other = probe.stats([adapter], texts, k)["preds"]
        rates.append(sum(int(a != b) for a, b in zip(preds, other)) / len(preds))
    return sum(rates) / len(rates)


def trust_samples(method: str, generator: Any, request: GenerationRequest,
                  adapters: Sequence[LoraAdapter]) -> list[LoraAdapter]:
    """CALIBRATION_SAMPLES extra samples of a sampling method for the spread features of a calibration case ([] when
    not needed/possible)."""
    if method not in SAMPLED or len(adapters) > 1:
        return []
    try:
        return generator.generate(replace(request, n_samples=CALIBRATION_SAMPLES, seed=request.seed or 0))
    except (LoragenError, ValueError, RuntimeError) as err:
        log.info("no trust samples from %s: %s", method, err)
        return []


def peer_adapters(peers: Mapping[str, Any], request: GenerationRequest) -> dict[str, LoraAdapter]:
    """Each other method's point adapter for `request` (methods that fail are skipped)."""
    out = {}
    for name, generator in peers.items():
        try:
            out[name] = generator.generate(replace(request, n_samples=1))[0]
        except (LoragenError, ValueError, RuntimeError, KeyError) as err:
            log.info("no %s adapter to compare with: %s", name, err)
    return out


def estimate(method: str, model: TrustModel | None, request: GenerationRequest,
             row: Mapping[str, float | None], path: Path | None, checkpoint: Path | None = None) -> Trust:
    """The trust score from a fitted model, or a plain 'not calibrated' (never a made-up number)."""
    if model is None:
        why = f"no trust file at {path}" if path is not None else "no checkpoint or bank to find a trust file by"
        return not_calibrated(method, why, checkpoint)
    fitted_for = model.meta.get("base_model")
    if fitted_for and request.base_model and fitted_for != request.base_model:
        return not_calibrated(method, f"its trust file is for base model {fitted_for}, not {request.base_model}",
                              checkpoint)
    est = model.predict(row)
    log.info("%s trust %.3f from %s%s", method, est.expected, ", ".join(f"{f}={row[f]:.3g}" for f in est.features),
             f" (left out, too few calibration cases with them: {', '.join(est.dropped)})" if est.dropped else "")
    if not all(math.isfinite(v) for v in (est.expected, est.low, est.high)):
        return not_calibrated(method, "the trust file gave a non-finite estimate", checkpoint)
    tip = advice(request, row, model.target) if est.expected < LOW else ""
    return Trust(method, est.expected, est.low, est.high, True, tip, model.target)


def build_peers(method: str, bank: Any, device: str = "auto", classifier: Callable[[], Any] | None = None,
                built: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The other methods' generators to compare with: `built` ones (a service's), else those whose checkpoint or
    bank is at hand; methods that cannot be built are skipped."""
    if built is not None:
        return {m: g for m, g in built.items() if m != method}
    from loragen.api.generators import REGISTRY, GeneratorContext
    from loragen.api.lookup import find_checkpoint

    out = {}
    for name in (m for m in REGISTRY if m != method):
        try:
            ckpt = None if name == "retrieve" else find_checkpoint(name, None).path
            if name == "retrieve" and bank is None:
                continue
            out[name] = REGISTRY[name].build(GeneratorContext(bank, device, ckpt, classifier))
        except (LoragenError, ImportError, OSError, ValueError, KeyError) as err:
            log.info("no %s adapter to compare with: %s", name, err)
    return out


def score_trust(method: str, request: GenerationRequest, adapters: Sequence[LoraAdapter], *,
                models: Any, bank: Any = None, inputs: Sequence[str] | None = None, checkpoint: Path | None = None,
                peers: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None) -> Trust:
    """The trust score of `adapters` generated by `method` for `request` (CLI, SDK and service).

    Args:
        models: an `api.base_models.BaseModels`. peers: the other methods' generators (`build_peers`), or a
            function that builds them (called only when there is a trust file to use them for).

    Raises:
        LoragenError: the base model cannot be loaded to compute the features on.
    """
    path = trust_path(method, checkpoint, getattr(bank, "path", None))
    model = load_trust(path)
    if model is None or (model.meta.get("base_model") not in (None, request.base_model)):
        return estimate(method, model, request, {}, path, checkpoint)
    try:
        loaded = models.get(request.base_model)
    except (OSError, ValueError) as err:
        raise LoragenError(f"cannot load base model {request.base_model} for the trust score: {err}") from None
    encode = None
    if bank is None:
        from loragen.bank.embed import default_encoder

        encode = lambda text: default_encoder().encode([text])[0]  # noqa: E731
    neighbours = functools.partial(_suite_neighbours, request.base_model)  # only without a bank task to go by
    others = peer_adapters((peers() if callable(peers) else peers) or {}, request)
    with loaded.lock:  # the request's own adapters only: no extra samples (see the module docstring)
        row = features(request, adapters, probe=Probe.from_loaded(loaded), bank=bank, model=model, peers=others,
                       inputs=inputs, encode=encode, neighbours=neighbours)
    return estimate(method, model, request, row, path, checkpoint)


def _suite_neighbours(base_model: str | None) -> SuiteNeighbours | None:
    """The built-in suite's tasks as neighbours for a request on the suite's base model (None for another base
    model, or when the suite cannot be built: the features are then left out)."""
    from loragen.api.suite_neighbours import suite_neighbours
    from loragen.bank.base_model import DEFAULT_BASE_MODEL

    if base_model != DEFAULT_BASE_MODEL:
        return None
    try:
        return suite_neighbours()
    except (LoragenError, OSError) as err:
        log.warning("no built-in suite neighbours for the trust score: %s", err)
        return None


def trust_dict(method: str, request: GenerationRequest, adapters: Sequence[LoraAdapter],
               **kwargs: Any) -> dict[str, float | bool | str | None]:
    """`score_trust(...).to_dict()`, or a not-scored entry when the base model cannot be loaded (the service's)."""
    try:
        return score_trust(method, request, adapters, **kwargs).to_dict()
    except LoragenError as err:  # the adapters are fine; only the trust score is missing
        log.warning("trust of a %s adapter not scored: %s", method, err)
        return {"expected": None, "low": None, "high": None, "calibrated": False, "advice": f"not scored: {err}"}
