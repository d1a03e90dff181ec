"""The service's operations as plain, synchronous, thread-safe methods: what the HTTP routes and the in-process SDK
both call, so the two clients give the same results by construction.

Heavy resources (the bank with its encoder and indexes, the generators, the base models) are created once by
`Service.start` (base models on first use) and shared by the worker threads. Thread safety:
- the bank is safe to share (one writer at a time, a DuckDB cursor per thread, index snapshots swapped atomically);
- each generator runs one request at a time behind its own lock (generators keep mutable state: caches, Pyro's
  parameter store), also as another method's trust peer (`api.scores`), so different methods run in parallel;
- each loaded base model gets LoRA forward hooks while it scores or predicts, so it has one user at a time (its
  lock, `api.base_models`); ABMLL, which refines with a classifier, gets its own instance.

Base models: a request is for the base model it names, else its method's own (a checkpoint's; for retrieval the
nearest adapter's); accepted are `Settings.base_models` and, unless `Settings.auto_base_models` is off, the base
models of the generators' checkpoints and of the bank's adapters.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from loragen.api.base_models import BaseModels, base_for_adapters, refiner
from loragen.api.deferred import DeferredScores, Pending, new_generation_id, pending_trust, scores_url
from loragen.api.errors import ApiError
from loragen.api.generators import REGISTRY, GeneratorContext, build_generators
from loragen.api.lookup import checkpoint_base_model, find_bank, find_checkpoints
from loragen.api.schemas import (
    AdapterInfo,
    Example,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    Hit,
    MergeRequest,
    MergeResponse,
    PredictRequest,
    PredictResponse,
    ReindexResponse,
    ScoresResponse,
    SearchResponse,
)
from loragen.api.settings import Settings
from loragen.api import scores
from loragen.api.predict import predict_request
from loragen.api.probe import example_judge
from loragen.api.trust import NOT_SCORED
from loragen.api.upload import check_upload_text, checked_upload
from loragen.bank.base_model import DEFAULT_BASE_MODEL, canonical_base_model_id
from loragen.bank.errors import LoragenError, NotFoundError, UnknownBaseModelError
from loragen.bank.generator import AdapterGenerator, GenerationRequest
from loragen.bank.lora import LoraAdapter, combine, load_peft, save_merged_model

log = logging.getLogger(__name__)


class Service:
    """loragen's operations over one bank.

    Usage::

        with Service.start(Settings.from_env()) as service:
            result = service.generate(GenerateRequest(description="label 0 if Polish, 1 if Czech"))

    Args:
        settings: the service settings.
        bank: an open `bank.store.Bank`.
        generators: method name -> generator.
        unavailable: method name -> why it is not served.
        checkpoints: method name -> the checkpoint its generator was loaded from.
    """

    def __init__(self, *, settings: Settings, bank: Any, generators: dict[str, AdapterGenerator],
                 unavailable: dict[str, str], checkpoints: dict[str, Path] | None = None,
                 models: BaseModels | None = None) -> None:
        self.settings = settings
        self.bank = bank
        self.generators = generators
        self.unavailable = unavailable
        self.models = models or BaseModels(settings.device)
        self._generator_locks = {method: threading.Lock() for method in REGISTRY}
        self._checkpoints = dict(checkpoints or {})
        self._method_bases = {m: b for m, p in (checkpoints or {}).items()
                              if m in generators and (b := checkpoint_base_model(p))}
        self._allowed_bases = self._accepted_base_models()
        self._deferred = DeferredScores(settings.deferred_scores)
        self._scheduler: Any = None
        self.on_generate: Any = None  # optional callback(method, seconds, n) for metrics
        self.on_reindex: Any = None  # optional callback(trigger)

    @classmethod
    def start(cls, settings: Settings) -> Service:
        """Open the bank and build every configured generator (the slow part of starting the server).

        The bank and the checkpoints are looked up in one order (`api.lookup`): the configured one, else yours at
        the default location, else the demo's.
        """
        from loragen.bank.store import Bank

        found = find_bank(settings.bank_path)
        bank = Bank.open(found.path if found else None, memory_limit=settings.bank_memory_limit)
        if found is not None and found.origin == "demo":
            log.warning("serving the demo's bank %s (no bank at the default location)", found.path)
        checkpoints = find_checkpoints({"cvae": settings.cvae_checkpoint, "abmll": settings.abmll_checkpoint},
                                       settings.methods)
        models = BaseModels(settings.device)  # retrieval's judge of labelled examples runs on them
        contexts = {m: GeneratorContext(bank=bank, device=settings.device, checkpoint=checkpoints.get(m),
                                        classifier=refiner(checkpoints.get(m), settings.device),
                                        judge=example_judge(models)) for m in settings.methods}
        generators, unavailable = build_generators(settings.methods, contexts)
        return cls(settings=settings, bank=bank, generators=generators, unavailable=unavailable,
                   checkpoints=checkpoints, models=models)

    def warm_up(self) -> None:
        """Load the description encoder and the generators' base models now, not on the first request."""
        self.bank.encoder.encode(["warm up"])
        for base in sorted(set(self._method_bases.values()) | ({DEFAULT_BASE_MODEL} & self._allowed_bases)):
            try:
                self.models.get(base)
            except (LoragenError, OSError) as err:
                log.warning("base model %s not loaded: %s", base, err)

    def _accepted_base_models(self) -> set[str]:
        """The configured base models, plus (by default) those of the generators and of the bank's adapters."""
        accepted = {canonical_base_model_id(b) for b in self.settings.base_models}
        if self.settings.auto_base_models:
            accepted |= set(self._method_bases.values())
            accepted |= {r.base_model for r in self.bank.adapters() if r.base_model}
        log.info("accepting adapters for base models %s", sorted(accepted))
        return accepted

    def close(self) -> None:
        """Stop the schedule and close the bank."""
        self.stop_schedule()
        self.bank.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- generation -------------------------------------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Generate adapter(s) for a description, store them with their provenance, score and place them.

        Raises:
            ApiError: 503 when the method is not available on this server.
            ValueError / LoragenError: an invalid request or base model (mapped to 4xx).
        """
        generator = self._generator(request.method)
        gen_request = self._generation_request(request)
        start = time.perf_counter()
        # Embedded outside the generator's lock: the generator's encode of it then hits the shared encoder's cache.
        self.bank.encoder.encode([request.description])
        with self._generator_locks[request.method]:
            adapters = generator.generate(gen_request)
        if not adapters:
            raise ApiError(500, "internal", f"generator {request.method!r} returned no adapter")
        # Scored outside the generator's lock. The bank signals read only trained (final) adapters, so scoring
        # before storing (inline) and after (deferred) see the same bank.
        generation = new_generation_id()
        if request.score == "inline":
            uncertainty, trust = self._model_scores(request.method, gen_request, adapters, request.inputs)
        else:
            uncertainty = scores.uncertainty(gen_request, adapters, bank=self.bank, models=self.models,
                                             settings=self.settings, model_scores=False)
            trust = dict(NOT_SCORED) if request.score == "off" else pending_trust(generation)
        provenance = _provenance(request, gen_request)
        ids = [self._store(a, request.description, provenance) for a in adapters]
        info = AdapterInfo.from_record(self.bank.record(ids[0]))
        neighbours = [Hit.from_hit(h) for h in self.bank.search_adapter(adapters[0], k=self.settings.neighbours + 1)
                      if h.id != ids[0]][: self.settings.neighbours]
        deferred = request.score == "deferred"
        if deferred:
            self._deferred.add(generation, Pending(request.method, gen_request, tuple(ids), request.inputs))
        seconds = time.perf_counter() - start
        if self.on_generate is not None:
            self.on_generate(request.method, seconds, len(adapters))
        return GenerateResponse(id=ids[0], ids=ids, method=request.method, adapter=info, uncertainty=uncertainty,
                                trust=trust, neighbours=neighbours, seconds=seconds, generation=generation,
                                scores_url=scores_url(generation) if deferred else None)

    def scores(self, generation: str) -> ScoresResponse:
        """A score=deferred generation's uncertainty and trust scores, computed on the first call.

        Raises:
            ApiError: 404 when the server holds no such generation (unknown, dropped, or from before a restart).
            NotFoundError: one of its adapters has left the bank.
        """
        def compute(entry: Pending) -> tuple[dict[str, Any], dict[str, Any]]:
            adapters = [self.bank.get(i) for i in entry.ids]
            return self._model_scores(entry.method, entry.request, adapters, entry.inputs)

        entry, (uncertainty, trust), seconds = self._deferred.scores(generation, compute)
        return ScoresResponse(generation=generation, id=entry.ids[0], method=entry.method, uncertainty=uncertainty,
                              trust=trust, seconds=seconds)

    def _model_scores(self, method: str, request: GenerationRequest, adapters: list[LoraAdapter],
                      inputs: list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(uncertainty, trust) of a generation with the base model run: the part a request may defer."""
        common = dict(bank=self.bank, models=self.models, inputs=inputs)
        trust = scores.trust(method, request, adapters, generators=self.generators, locks=self._generator_locks,
                             checkpoint=self._checkpoints.get(method), **common)
        return scores.uncertainty(request, adapters, settings=self.settings, model_scores=True, **common), trust

    def _generator(self, method: str) -> AdapterGenerator:
        if method in self.generators:
            return self.generators[method]
        reason = self.unavailable.get(method) or f"not enabled (LORAGEN_METHODS); {REGISTRY[method].hint}"
        raise ApiError(503, "method_unavailable", f"generation method {method!r} is not available on this "
                       f"server: {reason}. Available: {sorted(self.generators) or 'none'}.")

    def _generation_request(self, request: GenerateRequest) -> GenerationRequest:
        base = self._check_base(request.base_model or self._method_base(request.method, request.description))
        examples = tuple((e.text, e.label) if isinstance(e, Example) else (e.input, e.output)
                         for e in request.examples) if request.examples else None
        return GenerationRequest(description=request.description, labels=tuple(request.labels or ()) or None,
                                 examples=examples, base_model=base, n_samples=request.samples, seed=request.seed)

    def _store(self, adapter: LoraAdapter, description: str, provenance: dict[str, Any]) -> str:
        """Add a generated adapter to the bank and return its id.

        An adapter that is already in the bank is not stored twice: a retrieved adapter (it carries its bank id
        and its tensors still match that record's checksum) or one with the same canonical tensors.
        """
        adapter.check_finite()  # never let a NaN delta into the bank
        known = adapter.metadata.get("id")
        if known is not None:
            try:
                if self.bank.record(str(known)).sha256 == adapter.sha256():
                    return str(known)
            except NotFoundError:
                pass
        return self.bank.add(adapter.with_metadata(provenance=provenance), description=description,
                             kind="generated", source=f"generate:{provenance['method']}", on_duplicate="skip")

    def _method_base(self, method: str, description: str) -> str:
        """The base model a request that names none is for: the checkpoint's; for retrieval the nearest adapter's."""
        if method in self._method_bases and self._method_bases[method]:
            return self._method_bases[method]
        if method == "retrieve" and method in self.generators:
            return self.generators[method].nearest_base_model(description) or DEFAULT_BASE_MODEL
        return DEFAULT_BASE_MODEL

    def get(self, adapter_id: str) -> AdapterInfo:
        """An adapter's metadata. Raises NotFoundError (404) for an unknown id."""
        return AdapterInfo.from_record(self.bank.record(adapter_id))

    def export(self, adapter_id: str, directory: str | Path) -> Path:
        """Write an adapter as a PEFT directory."""
        return self.bank.export_peft(adapter_id, directory)

    def upload_dir(self, directory: str | Path, *, description: str, task: str | None = None) -> AdapterInfo:
        """Validate a PEFT directory (format, base model, shapes, finiteness) and add it to the bank.

        The adapter is stored as kind "uploaded" with source "upload". loragen metadata in its safetensors header
        (kind, provenance, metrics, ...) is a claim nobody checked, so it is dropped; only PEFT's task type is
        kept (so the download loads as it was saved).

        Raises:
            ApiError: 422 for an empty or too long description or task name.
            AdapterFormatError / AdapterShapeError / UnknownBaseModelError / NonFiniteError: the adapter is refused
                and the bank is unchanged.
        """
        check_upload_text(description, task)
        adapter = load_peft(directory)
        self._check_base(adapter.base_model or "")
        adapter = checked_upload(adapter)
        # The bank checks every module against the base model's layers and finiteness before writing anything.
        adapter_id = self.bank.add(adapter, task=task, description=description, kind="uploaded", source="upload")
        return AdapterInfo.from_record(self.bank.record(adapter_id))

    def search(self, query: str, k: int = 5) -> SearchResponse:
        """Bank adapters whose descriptions are closest to `query`."""
        if not query.strip():
            raise ApiError(422, "invalid_request", "query is empty; describe the task you are looking for.")
        hits = self.bank.search_text(query, k=k)
        return SearchResponse(query=query, hits=[Hit.from_hit(h) for h in hits])

    def reindex(self, trigger: str = "request") -> ReindexResponse:
        """Rebuild the bank's indexes (atomically; searches keep answering from the old ones meanwhile)."""
        start = time.perf_counter()
        self.bank.reindex()  # the bank allows one re-index at a time; searches go on meanwhile
        stats = self.bank.stats()
        seconds = time.perf_counter() - start
        log.info("bank re-indexed (%s) in %.2fs: %s", trigger, seconds, stats)
        if self.on_reindex is not None:
            self.on_reindex(trigger)
        return ReindexResponse(seconds=seconds, stats=_jsonable(stats))

    def health(self) -> HealthResponse:
        from loragen.api import __version__

        count = len(self.bank.adapters())
        return HealthResponse(version=__version__, methods=sorted(self.generators), unavailable=self.unavailable,
                              adapters=count)

    # ---- merge and predict --------------------------------------------------------------------------------------

    def merge(self, request: MergeRequest) -> MergeResponse:
        """Merge bank adapters into a fresh base model and save it under the merge root.

        Raises:
            ApiError: 409 when the output folder exists; 422 for adapters of another base model.
        """
        adapters = [self.bank.get(i) for i in request.adapter_ids]
        base = self._check_base(request.base_model or base_for_adapters(adapters, [None] * len(adapters), None))
        root = self.settings.merge_root.resolve()
        output = (root / request.output).resolve()
        if output.parent != root:  # the schema forbids slashes; this guards '.' and '..' too
            raise ApiError(422, "invalid_request", f"output {request.output!r} must be a plain folder name.")
        if output.exists():
            raise ApiError(409, "exists", f"{request.output!r} already exists under the merge root; pick a new name.")
        wrong = [a.metadata.get("id") for a in adapters if canonical_base_model_id(a.base_model) != base]
        if wrong:
            raise ApiError(422, "base_model_mismatch", f"adapters {wrong} are not for base model {base!r}.")
        combined = combine(adapters, request.weights, method=request.method, rank=request.rank,
                           density=request.density)
        save_merged_model(combined, output, base_model=base)
        return MergeResponse(output_dir=str(output), adapter_ids=request.adapter_ids, method=request.method,
                             base_model=base)

    def predict(self, request: PredictRequest) -> PredictResponse:
        """Label probabilities of the prototype classifier on the adapter's base model (without an adapter: the
        packaged MiniLM) for `texts`, with a bank adapter applied (`api.predict.predict_request`).

        Raises:
            ApiError: 422 for an adapter of a causal LM (it completes text: `loragen predict` prints completions).
        """
        return predict_request(self.bank, self.models, request)

    def _check_base(self, name: str) -> str:
        try:
            base = canonical_base_model_id(name) if name else ""
        except UnknownBaseModelError as err:
            raise UnknownBaseModelError(f"{err} This server accepts {sorted(self._allowed_bases)}.") from None
        if base not in self._allowed_bases:
            raise UnknownBaseModelError(f"the adapter or request is for base model {name!r}; this server accepts "
                                        f"{sorted(self._allowed_bases)}.")
        return base

    # ---- scheduled re-index -------------------------------------------------------------------------------------

    def start_schedule(self) -> None:
        """Re-index the bank on the configured interval or cron expression (bank/schedule.py: at most one run at
        a time, each logged with its duration and size). Does nothing when both are off."""
        from loragen.bank.store.schedule import ReindexSchedule, start_reindex_schedule

        if self.settings.reindex_cron:
            schedule = ReindexSchedule(cron=self.settings.reindex_cron)
        elif self.settings.reindex_interval_s > 0:
            schedule = ReindexSchedule(interval_s=self.settings.reindex_interval_s)
        else:
            return
        self._scheduler = start_reindex_schedule(self.bank, schedule)

    def stop_schedule(self) -> None:
        """Stop the schedule, waiting for a running re-index to finish."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None


def _provenance(request: GenerateRequest, gen_request: GenerationRequest) -> dict[str, Any]:
    return {"method": request.method, "seed": request.seed, "samples": request.samples,
            "labels": list(gen_request.labels or ()), "n_examples": len(gen_request.examples or ()),
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    return {str(k): (v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else str(v))
            for k, v in stats.items()}
