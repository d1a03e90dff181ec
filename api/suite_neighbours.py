"""The built-in suite as the trust score's neighbours when there is no bank: `loragen generate "..."` with only
the defaults.

The trust features `bank_similarity` (cosine of the description to the nearest bank task's) and `entropy_probe` /
`max_prob_probe` / `disagreement` (measured on that task's inputs) come from a bank. The shipped generators'
trust files were fitted on the built-in suite's bank, whose tasks are exactly the suite's, so without a bank the
same features are computed against the suite itself: the nearest suite task by description, and its first
`PROBE_TEXTS` validation inputs. A user's own bank, when there is one, always comes first (`api.trust.features`).

The suite's descriptions, their embeddings and the probe texts take a few seconds to rebuild (the task list and
one MiniLM pass), so they are kept in ``<home>/cache/`` as JSON plus a ``.npy`` array (read with
``allow_pickle=False``), keyed by a hash of the suite's source files, the loragen and Faker versions and the
encoder: any change rebuilds them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from loragen.api.uncertainty import PROBE_TEXTS

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass(frozen=True)
class SuiteNeighbours:
    """The suite's tasks as description neighbours with probe texts.

    Attributes:
        base_model: the base model the suite's tasks (and the shipped trust files) are for.
        names: task names. embeddings: (n, d) L2-normalised description embeddings. texts: per task, its probe
            inputs.
    """

    base_model: str
    names: tuple[str, ...]
    embeddings: np.ndarray
    texts: tuple[tuple[str, ...], ...]

    def nearest(self, embedding: np.ndarray, exclude: frozenset[str] = frozenset()) -> tuple[float, str] | None:
        """(cosine, task) of the suite task whose description is nearest to an L2-normalised embedding."""
        sims = self.embeddings.astype(np.float32) @ np.asarray(embedding, np.float32)
        for i in np.argsort(-sims, kind="stable"):
            if self.names[i] not in exclude:
                return float(sims[i]), self.names[i]
        return None

    def probe_texts(self, task: str) -> tuple[str, ...]:
        """The probe inputs of a suite task (() for a name that is not one)."""
        try:
            return self.texts[self.names.index(task)]
        except ValueError:
            return ()


def suite_neighbours() -> SuiteNeighbours:
    """The built-in suite's neighbours, from the cache in ``<home>/cache/`` or rebuilt (and cached) once.

    Raises:
        TaskDataError: the suite cannot be built (its data sources are missing).
    """
    return _neighbours(_key())


def _key() -> str:
    from loragen.bank.embed import default_encoder

    suite_dir = Path(__file__).resolve().parents[1] / "bank" / "suite"
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for path in sorted(suite_dir.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    for dist in ("loragen", "faker"):
        try:
            digest.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{dist}=none".encode())
    digest.update(default_encoder().name.encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def _neighbours(key: str) -> SuiteNeighbours:
    from loragen.bank import paths

    stem = paths.home() / "cache" / f"suite-neighbours-{key}"
    meta_path, array_path = stem.with_suffix(".json"), stem.with_suffix(".npy")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        embeddings = np.load(array_path, allow_pickle=False)
        if meta.get("key") == key and embeddings.shape[0] == len(meta["names"]):
            return SuiteNeighbours(meta["base_model"], tuple(meta["names"]), embeddings,
                                   tuple(tuple(t) for t in meta["texts"]))
    except (OSError, ValueError, KeyError) as err:
        log.debug("suite neighbours not cached at %s (%s): building them", stem, err)
    built = _build()
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        tmp = stem.with_name(stem.name + ".tmp.npy")
        np.save(tmp, built.embeddings, allow_pickle=False)
        tmp.replace(array_path)
        meta_tmp = stem.with_name(stem.name + ".tmp.json")
        meta_tmp.write_text(json.dumps({"key": key, "base_model": built.base_model, "names": list(built.names),
                                        "texts": [list(t) for t in built.texts]}), encoding="utf-8")
        meta_tmp.replace(meta_path)
    except OSError as err:  # a read-only home: rebuilt next time, nothing else changes
        log.warning("could not cache the suite neighbours in %s: %s", stem.parent, err)
    return built


def _build() -> SuiteNeighbours:
    from loragen.bank.base_model import DEFAULT_BASE_MODEL
    from loragen.bank.embed import default_encoder
    from loragen.bank.tasks import BUILTIN, get_provider

    suite = get_provider(BUILTIN)
    tasks = suite.tasks()
    embeddings = default_encoder().encode([t.description for t in tasks]).astype(np.float16)
    texts = tuple(tuple(str(x) for x, _ in suite.data(t).val[:PROBE_TEXTS]) for t in tasks)
    return SuiteNeighbours(DEFAULT_BASE_MODEL, tuple(t.name for t in tasks), embeddings, texts)
