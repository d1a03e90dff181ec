"""Pydantic request and response models: the HTTP contract, and the SDK's typed results for both clients.

The in-process SDK returns these same models, so code written against `Client()` runs unchanged against
`Client(url=...)`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loragen.api.generators import METHODS
from loragen.bank.generator import MAX_DESCRIPTION_CHARS, MAX_EXAMPLES
from loragen.bank.records import AdapterRecord, SearchHit

Method = Literal[METHODS]  # type: ignore[valid-type]  # the method table of api/generators.py, as a Literal
MergeMethod = Literal["linear", "svd", "ties"]
MAX_TEXTS = 256
MAX_INPUTS = 64  # unlabeled inputs a generate request may bring for its scores
# When a generation's model-based scores (uncertainty on probe inputs, trust) are computed: "deferred" (the default)
# answers at once with a `scores_url` the client GETs for them (computed then, once); "inline" computes them before
# answering; "off" skips them. JSON true/false mean "inline"/"off".
ScoreMode = Literal["deferred", "inline", "off"]
SCORE_MODES: tuple[str, ...] = ("deferred", "inline", "off")


def score_mode(value: Any) -> str:
    """A request's `score` as a ScoreMode: booleans and their usual query spellings (1/0, true/false) included."""
    if isinstance(value, bool):
        return "inline" if value else "off"
    text = str(value).strip().lower()
    spelled = {"1": "inline", "true": "inline", "yes": "inline", "0": "off", "false": "off", "no": "off"}
    mode = spelled.get(text, text)
    if mode not in SCORE_MODES:
        raise ValueError(f"score must be one of {list(SCORE_MODES)} (or true/false), got {value!r}")
    return mode


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class ErrorDetail(_Model):
    status: int
    code: str = Field(description="machine-readable error code, e.g. 'not_found', 'unauthorized', 'bad_archive'")
    message: str = Field(description="what was wrong and what to do about it")


class ErrorBody(_Model):
    """The one error body every failing request gets."""

    error: ErrorDetail


class AdapterInfo(_Model):
    """An adapter's metadata as the bank holds it (the tensors come from `GET /v1/adapters/{id}/peft`)."""

    id: str
    base_model: str
    r: int
    lora_alpha: float
    target_modules: list[str]
    sha256: str
    task: str | None = None
    description: str | None = None
    kind: str = "final"
    source: str = ""
    canonical: bool = True
    created_at: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_record(cls, record: AdapterRecord) -> AdapterInfo:
        return cls(
            id=record.id, base_model=record.base_model, r=record.r, lora_alpha=record.lora_alpha,
            target_modules=list(record.target_modules), sha256=record.sha256, task=record.task,
            description=record.description, kind=record.kind, source=record.source, canonical=record.canonical,
            created_at=str(record.created_at), metrics=dict(record.metrics), metadata=dict(record.metadata),
        )


class Hit(_Model):
    """A search result: higher `score` is closer."""

    id: str
    score: float
    task: str | None = None
    description: str | None = None

    @classmethod
    def from_hit(cls, hit: SearchHit) -> Hit:
        return cls(id=hit.id, score=float(hit.score), task=hit.task, description=hit.description)


class Example(_Model):
    """A labelled example of a classification task."""

    text: str = Field(min_length=1, max_length=4000)
    label: int = Field(ge=0)


class PairExample(_Model):
    """An (input, output) example of a generation task (ABMLL refines its posterior on these)."""

    input: str = Field(min_length=1, max_length=4000)
    output: str = Field(max_length=4000)


class GenerateRequest(_Model):
    """What `POST /v1/adapters:generate` takes."""

    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION_CHARS,
                             examples=["label 0 if the sentence is Polish, label 1 if it is Czech"])
    labels: list[str] | None = Field(default=None, min_length=2, max_length=64)
    examples: list[Example | PairExample] | None = Field(default=None, max_length=MAX_EXAMPLES)
    base_model: str | None = Field(default=None, description="a base model the server accepts (packaged name or "
                                   "local directory); default: the method's own (its checkpoint's; for retrieve the "
                                   "nearest bank adapter's)")
    method: Method = "retrieve"
    samples: int = Field(default=1, ge=1, le=64, description="1: the point estimate; more: that many samples")
    seed: int | None = Field(default=None, ge=0)
    inputs: list[Annotated[str, Field(min_length=1, max_length=4000)]] | None = Field(
        default=None, max_length=MAX_INPUTS, description="unlabeled inputs of your task: the uncertainty and trust "
        "scores run the adapter on them (its predictive entropy, and whether it gives them all one label, the "
        "strongest label-free sign of an adapter at chance), the first 16 of them; default: the examples' texts, "
        "else the nearest bank task's inputs")
    score: ScoreMode = Field(default="deferred", description="the model-based scores (the uncertainty on probe "
                             "inputs and the trust score) run the base model on up to 16 texts per adapter and per "
                             "peer method (for MiniLM about 50 ms of one CPU core each). deferred: answer now, with "
                             "`scores_url` to GET them from (computed on that GET, once); inline (or true): compute "
                             "them before answering; off (or false): skip them, the response says so "
                             "(uncertainty.scored false, trust.advice 'not scored'). Same as `?score=`.")

    @field_validator("score", mode="before")
    @classmethod
    def _score(cls, value: Any) -> str:
        return score_mode(value)


class GenerateResponse(_Model):
    """The stored adapter(s), the uncertainty scores and the nearest bank neighbours."""

    id: str = Field(description="the point estimate (the first adapter)")
    ids: list[str] = Field(description="every stored adapter, the point estimate first")
    method: Method
    adapter: AdapterInfo
    uncertainty: dict[str, float | bool | str | None] = Field(
        default_factory=dict, description="uncertainty scores: nearest_task_similarity and scored always (scored "
        "is true only for score=inline; deferred ones are at scores_url); when scored, on probe inputs also "
        "predictive_entropy, mutual_information, confidence (calibrated: true when fitted), ... (per output token, "
        "with n_tokens, for a causal LM; for an encoder with the meta package)")
    trust: dict[str, float | bool | str | None] = Field(
        default_factory=dict, description="expected accuracy (exact match for generation) of the adapter on the "
        "task (for score=deferred null here and given at scores_url): expected, low, high (the interval; null when "
        "not calibrated), calibrated (a trust file fitted by `loragen trust fit` was used), advice (what helps "
        "when low, or how to calibrate)")
    neighbours: list[Hit]
    seconds: float
    generation: str = Field(description="this generation's id (its scores are kept under it)")
    scores_url: str | None = Field(default=None, description="score=deferred: GET it for the uncertainty and trust "
                                   "scores (computed on the first GET); null when they are in this response or off")


class ScoresResponse(_Model):
    """What `GET /v1/generations/{generation}/scores` returns: a deferred generation's model-based scores."""

    generation: str
    id: str = Field(description="the generation's point-estimate adapter")
    method: Method
    uncertainty: dict[str, float | bool | str | None] = Field(description="as GenerateResponse.uncertainty")
    trust: dict[str, float | bool | str | None] = Field(description="as GenerateResponse.trust")
    seconds: float = Field(description="how long computing them took (0 when they had been computed before)")


class SearchResponse(_Model):
    query: str
    hits: list[Hit]


class MergeRequest(_Model):
    """Merge bank adapters into the base model and write it under the server's merge root."""

    adapter_ids: list[str] = Field(min_length=1, max_length=32)
    weights: list[float] | None = None
    method: MergeMethod = "linear"
    rank: int | None = Field(default=None, ge=1, le=1024)
    density: float = Field(default=0.2, gt=0, le=1)
    base_model: str | None = None
    output: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$",
                        description="folder name created under the server's merge root (no slashes)")


class MergeResponse(_Model):
    output_dir: str
    adapter_ids: list[str]
    method: MergeMethod
    base_model: str


class PredictRequest(_Model):
    """Apply a bank adapter of an encoder (or none: the packaged MiniLM) to texts: prototype-classifier labels."""

    adapter_id: str | None = None
    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS)
    num_labels: int | None = Field(default=None, ge=2, le=16,
                                   description="label count (default: that of the adapter's task, else 2)")


class PredictResponse(_Model):
    probabilities: list[list[float]] = Field(description="(n_texts, n_labels) label probabilities")
    predictions: list[int]
    labels: list[str] | None = None


class ReindexResponse(_Model):
    seconds: float
    stats: dict[str, Any]


class HealthResponse(_Model):
    status: Literal["ok"] = "ok"
    version: str
    methods: list[str] = Field(description="generation methods ready to serve")
    unavailable: dict[str, str] = Field(default_factory=dict, description="method -> why it is not available")
    adapters: int
    shipped: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="base model -> the generators shipped with loragen for it: methods "
        "(size), evaluation summary (normalised gain per split) and build time, from its manifest.json")
