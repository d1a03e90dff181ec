"""Service settings: one frozen, keyword-only dataclass that checks itself, with environment overrides.

Every field can be set from the environment as ``LORAGEN_<FIELD>`` (upper case), e.g. ``LORAGEN_TOKEN``,
``LORAGEN_BANK_PATH``, ``LORAGEN_MERGE_ROOT``, ``LORAGEN_REINDEX_INTERVAL_S``. Explicit keyword arguments to
`Settings.from_env` win over the environment, which wins over the defaults. An empty variable counts as unset,
except ``LORAGEN_TOKEN``: an empty token is refused rather than silently turning authentication off.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loragen.api.generators import METHODS
from loragen.bank import paths
from loragen.bank.base_model import DEFAULT_BASE_MODEL, packaged_model, resolve_base_model
from loragen.bank.errors import ConfigError, UnknownBaseModelError
from loragen.bank.store.connection import MEMORY_SIZE
from loragen.bank.store.schema import DEFAULT_MEMORY_LIMIT

MiB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How the service runs.

    Attributes:
        bank_path: the bank's DuckDB file (None: the bank's own default under $LORAGEN_HOME).
        token: API token required (as ``Authorization: Bearer <token>``) on every request but ``GET /healthz``:
            writes and reads (search, metadata, downloads, /metrics, /docs); None disables auth.
        open_reads: with a token, serve reads (GET: search, metadata, downloads, /metrics, /docs) without it;
            writes still need it. Off by default: anyone who reaches the port could list and download the bank.
        max_request_bytes: largest accepted body for JSON requests.
        max_upload_bytes: largest accepted body for an adapter upload (the zip archive).
        max_archive_members: most files an uploaded archive may hold.
        max_member_bytes: largest uncompressed size of one archive member.
        max_compression_ratio: largest uncompressed/compressed ratio of a member (zip-bomb guard).
        merge_root: the only directory under which `POST /v1/merge` writes merged models.
        reindex_interval_s: seconds between scheduled bank re-indexes (0 disables the schedule).
        reindex_cron: a crontab expression ("0 3 * * *") used instead of the interval when set.
        generation_workers: threads running generation and bank work off the event loop.
        methods: generation methods the service offers (each is started at startup if it can be).
        base_models: base models the service accepts adapters for: packaged names or local transformers
            directories (the packaged MiniLM by default).
        auto_base_models: also accept the base models of the generators it loaded (their checkpoints') and of
            the bank's adapters (LORAGEN_AUTO_BASE_MODELS=0 turns this off).
        device: where models run ("auto", "cpu", "cuda").
        cvae_checkpoint: the trained ICM-LoRA CVAE (None: the hypernet package's default location).
        abmll_checkpoint: the trained ABMLL model (None: the meta package's default location).
        calibrator: a fitted confidence calibrator (JSON from meta); None uses the `calibrator.json` that
            bench/meta_eval.py writes next to the ABMLL checkpoint when there is one, else the raw confidence.
        neighbours: how many bank neighbours a generation reports.
        deferred_scores: how many score=deferred generations the service keeps scoring material for (their
            `GET /v1/generations/{id}/scores`); older ones are dropped, least recently used first.
        torch_threads: torch intra-op threads in the server process (None: torch's default). The server runs
            requests in parallel on `generation_workers` threads; splitting each small forward pass over more
            threads as well made a generate request 6x slower on a loaded 2-core machine (1.2 s vs 0.2 s).
        bank_memory_limit: DuckDB's memory limit on the bank's connection ("256MB" by default; "1GB", ...); DuckDB's
            own default is 80% of RAM (`bank.store.schema.DEFAULT_MEMORY_LIMIT`).
        malloc_arena_max: most glibc malloc arenas the server's threads share (0: glibc's default, 8 per core);
            fewer arenas let memory freed by one request be reused by the next (`api.allocator`).
        malloc_mmap_threshold: bytes from which glibc serves an allocation with its own mmap (0: glibc's dynamic
            threshold, which rises to 32 MiB and lets a forward pass's activations fragment the arenas).
        malloc_trim_interval_s: seconds between returning freed heap pages to the system (0: never).
    """

    bank_path: Path | None = None
    token: str | None = None
    open_reads: bool = False
    max_request_bytes: int = 1 * MiB
    max_upload_bytes: int = 64 * MiB
    max_archive_members: int = 8
    max_member_bytes: int = 256 * MiB
    max_compression_ratio: float = 200.0
    merge_root: Path = field(default_factory=lambda: paths.merge_root())
    reindex_interval_s: float = 3600.0
    reindex_cron: str | None = None
    generation_workers: int = 2
    methods: tuple[str, ...] = METHODS
    base_models: tuple[str, ...] = (DEFAULT_BASE_MODEL,)
    auto_base_models: bool = True
    device: str = "auto"
    cvae_checkpoint: Path | None = None
    abmll_checkpoint: Path | None = None
    calibrator: Path | None = None
    neighbours: int = 5
    deferred_scores: int = 256
    torch_threads: int | None = 1
    bank_memory_limit: str = DEFAULT_MEMORY_LIMIT
    malloc_arena_max: int = 2
    malloc_mmap_threshold: int = MiB
    malloc_trim_interval_s: float = 30.0

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ConfigError("invalid service settings: " + "; ".join(problems))
        object.__setattr__(self, "merge_root", Path(self.merge_root).expanduser())
        for name in ("bank_path", "cvae_checkpoint", "abmll_checkpoint", "calibrator"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)).expanduser())

    def _problems(self) -> list[str]:
        """Every bad value, each naming its field, its environment variable and what is allowed."""
        problems = []
        for name in ("max_request_bytes", "max_upload_bytes", "max_archive_members", "max_member_bytes",
                     "generation_workers", "neighbours", "deferred_scores"):
            if getattr(self, name) < 1:
                problems.append(f"{_name(name)} must be >= 1, got {getattr(self, name)}")
        if self.torch_threads is not None and self.torch_threads < 1:
            problems.append(f"{_name('torch_threads')} must be >= 1 or unset, got {self.torch_threads}")
        if not MEMORY_SIZE.fullmatch(self.bank_memory_limit.strip()):
            problems.append(f"{_name('bank_memory_limit')} must be a size such as 256MB or 1GB, got "
                            f"{self.bank_memory_limit!r}")
        if self.malloc_arena_max < 0:
            problems.append(f"{_name('malloc_arena_max')} must be >= 0 (0: glibc's default), got "
                            f"{self.malloc_arena_max}")
        if self.malloc_mmap_threshold < 0:
            problems.append(f"{_name('malloc_mmap_threshold')} must be >= 0 (0: glibc's default), got "
                            f"{self.malloc_mmap_threshold}")
        if self.malloc_trim_interval_s < 0:
            problems.append(f"{_name('malloc_trim_interval_s')} must be >= 0 (0: never), got "
                            f"{self.malloc_trim_interval_s}")
        if self.max_compression_ratio <= 1:
            problems.append(f"{_name('max_compression_ratio')} must be > 1, got {self.max_compression_ratio}")
        if self.reindex_interval_s < 0:
            problems.append(f"{_name('reindex_interval_s')} must be >= 0 (0 disables it), got "
                            f"{self.reindex_interval_s}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            problems.append(f"{_name('methods')}: {unknown} unknown; choose from {', '.join(METHODS)}")
        if self.token is not None and len(self.token) < 8:
            what = "is empty" if not self.token else f"has {len(self.token)} characters"
            problems.append(f"{_name('token')} {what}; use a token of at least 8 characters, or unset "
                            "LORAGEN_TOKEN (and drop --token-file) to disable auth")
        for name in self.base_models:
            try:
                if packaged_model(name) is None:  # packaged ones are located (or converted) when first used
                    resolve_base_model(name)
            except UnknownBaseModelError as err:
                problems.append(f"{_name('base_models')}: {err}")
        if self.reindex_cron:
            from loragen.bank.store.schedule import ReindexSchedule

            try:
                ReindexSchedule(cron=self.reindex_cron)  # parse now: a bad expression fails at startup
            except ValueError as err:
                problems.append(f"{_name('reindex_cron')}: {err}")
        return problems

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``LORAGEN_<FIELD>`` variables, then `overrides` (None values are ignored).

        Raises:
            ConfigError: a variable does not parse, or a value is out of range (every problem, each naming the
                variable).
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems = []
        for f in dataclasses.fields(cls):
            raw = env.get(_variable(f.name))
            if raw is not None and (raw != "" or f.name == "token"):  # an empty token must not disable auth
                try:
                    values[f.name] = _parse(f, raw)
                except ValueError:
                    problems.append(f"{_variable(f.name)}={raw!r} is not {_KIND.get(f.name, 'valid')}; set it "
                                    f"like {_variable(f.name)}={_example(f)}")
        if problems:
            raise ConfigError("invalid service settings: " + "; ".join(problems))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_INTS = {"max_request_bytes", "max_upload_bytes", "max_archive_members", "max_member_bytes",
         "generation_workers", "neighbours", "deferred_scores", "torch_threads", "malloc_arena_max",
         "malloc_mmap_threshold"}
_FLOATS = {"max_compression_ratio", "reindex_interval_s", "malloc_trim_interval_s"}
_TUPLES = {"methods", "base_models"}
_BOOLS = {"auto_base_models", "open_reads"}
_KIND = {**{name: "a whole number" for name in _INTS}, **{name: "a number" for name in _FLOATS},
         **{name: "true or false (1/0, yes/no)" for name in _BOOLS}}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _variable(name: str) -> str:
    return f"LORAGEN_{name.upper()}"


def _name(name: str) -> str:
    """How problems name a setting: the field and the variable that sets it."""
    return f"{name} ({_variable(name)})"


def _example(f: dataclasses.Field) -> str:
    return str(f.default) if f.default not in (None, dataclasses.MISSING) else "1"


def _parse(f: dataclasses.Field, raw: str) -> Any:
    """One variable's value as the field's type (ValueError when it is not a number where one belongs)."""
    if f.name in _INTS:
        return int(raw)
    if f.name in _FLOATS:
        return float(raw)
    if f.name in _TUPLES:
        return tuple(x.strip() for x in raw.split(",") if x.strip())
    if f.name in _BOOLS:
        if raw.strip().lower() not in _TRUE | _FALSE:
            raise ValueError(raw)
        return raw.strip().lower() in _TRUE
    return raw
