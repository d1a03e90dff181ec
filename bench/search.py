"""Search benchmark for the bank's indexes: FAISS approximate (HNSW) vs FAISS exact vs a plain numpy scan.

The vectors come from real structure, not i.i.d. noise (on which approximate search is meaningless): MiniLM
embeddings of task-like descriptions generated from templates x Faker names (languages, countries, jobs, companies,
products), each written in two wordings, then expanded to the target size with paraphrase-like noise that stays in
the descriptions' principal subspace (plus a little isotropic noise). Queries are fresh descriptions in wordings the
bank never saw. Each size is measured with one query at a time on one thread (the service answers each request on
its own thread), all methods side by side in one run.

Run:
    HF_HUB_OFFLINE=1 python bench/search.py                 # 10k and 100k, writes bench/results/search.json
    HF_HUB_OFFLINE=1 python bench/search.py --sizes 10000 --queries 200    # quicker

Output JSON: per size ("10000", "100000") and method ("numpy", "faiss_flat", "faiss_hnsw", "faiss_hnsw_ef*"):
recall_at_10, p50_ms, p99_ms, qps, speedup_vs_numpy (QPS ratio), plus build_s and the method `Bank` would pick.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one query, one core: before numpy/faiss start their pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from loragen.bank.store.vector_index import APPROX_THRESHOLD, HNSWParams, build_index, choose_method  # noqa: E402

_TEMPLATES = [
    ("Decide whether a sentence is written in {lang} or in {lang2}.",
     "Is this text {lang} rather than {lang2}?"),
    ("Label each review of {product} as positive or negative.",
     "Tell me if a customer liked the {product} or not."),
    ("Detect messages that mention the company {company}.",
     "Flag texts talking about {company}."),
    ("Classify job ads: is the position a {job} or something else?",
     "Does this vacancy describe work as a {job}?"),
    ("Decide if a news snippet is about {country} or about {country2}.",
     "Which country does the article concern, {country} or {country2}?"),
    ("Identify sentences that describe the city of {city}.",
     "Is the passage about {city}?"),
    ("Sort customer emails about {product} into complaint, question or praise.",
     "Is the {product} email a complaint, a question or praise?"),
    ("Recognise whether a tweet written in {lang} is sarcastic.",
     "Spot sarcasm in {lang} tweets."),
    ("Classify support tickets from {company} by urgency: low, medium or high.",
     "How urgent is this {company} ticket?"),
    ("Determine whether a {job} would find this document relevant.",
     "Is the document useful for a {job}?"),
]


@dataclass(frozen=True)
class BenchConfig:
    """Benchmark settings.

    Attributes:
        sizes: bank sizes to measure.
        n_descriptions: distinct generated descriptions (each embedded in two wordings).
        n_queries: queries per size (fresh descriptions, unseen wordings).
        noise: scale of the paraphrase-like noise used to expand to the target size.
        ef_search: extra HNSW efSearch values to sweep (the bank's default is measured as "faiss_hnsw").
        seed: seed of everything random.
    """

    sizes: tuple[int, ...] = (10_000, 100_000)
    n_descriptions: int = 4000
    n_queries: int = 500
    noise: float = 0.35
    ef_search: tuple[int, ...] = (32, 64, 128)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 100:
            raise ValueError(f"BenchConfig.sizes must be >= 100 each, got {self.sizes}")
        for name in ("n_descriptions", "n_queries"):
            if getattr(self, name) < 10:
                raise ValueError(f"BenchConfig.{name} must be >= 10, got {getattr(self, name)}")


def generate_descriptions(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (description, paraphrase) pairs from templates x Faker names."""
    from faker import Faker

    fake = Faker()
    Faker.seed(seed)
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        names = {
            "lang": fake.language_name(), "lang2": fake.language_name(), "product": fake.word() + " " + fake.word(),
            "company": fake.company(), "job": fake.job(), "country": fake.country(), "country2": fake.country(),
            "city": fake.city(),
        }
        pairs.append((template[0].format(**names), template[1].format(**names)))
    return pairs


def build_corpus(cfg: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """(max(sizes), 384) bank vectors and (n_queries, 384) query vectors, all L2-normalised."""
    from loragen.bank.embed import TextEncoder

    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # encoding is batch work: every core (OMP_NUM_THREADS is for queries)
    encoder = TextEncoder(batch_size=128)
    pairs = generate_descriptions(cfg.n_descriptions + cfg.n_queries, cfg.seed)
    texts = [t for pair in pairs[: cfg.n_descriptions] for t in pair]
    t0 = time.perf_counter()
    base = encoder.encode(texts, show_progress=True)  # (2 * n_descriptions, 384)
    # Queries: the unseen wording of fresh descriptions.
    queries = encoder.encode([p[1] for p in pairs[cfg.n_descriptions:]])
    print(f"encoded {len(texts) + cfg.n_queries} descriptions in {time.perf_counter() - t0:.1f} s")
    return expand(base, max(cfg.sizes), cfg.noise, cfg.seed), queries


def expand(base: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    """`n` vectors: the real embeddings, then noisy copies with noise in their top-64 principal subspace."""
    rng = np.random.default_rng(seed)
    centred = base - base.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = 64
    comp = vt[:k] * (s[:k, None] / np.sqrt(len(base)))  # (k, 384): principal directions scaled by their std
    extra = n - len(base)
    src = base[rng.integers(0, len(base), extra)]
    structured = rng.standard_normal((extra, k)).astype(np.float32) @ comp  # (extra, 384)
    iso = rng.standard_normal(src.shape).astype(np.float32) * (0.1 / np.sqrt(base.shape[1]))
    x = np.concatenate([base, src + noise * structured + noise * iso]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _time(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-query latencies (s) and top-10 ids, one query at a time."""
    lat, found = np.empty(len(queries)), np.empty((len(queries), 10), dtype=np.int64)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        found[i] = search(q)
        lat[i] = time.perf_counter() - t0
    return lat, found


def _numpy_search(x: np.ndarray):
    def search(q: np.ndarray) -> np.ndarray:
        scores = x @ q  # (n,)
        top = np.argpartition(-scores, 10)[:10]
        return top[np.argsort(-scores[top])]

    return search


def _faiss_search(index: faiss.Index):
    def search(q: np.ndarray) -> np.ndarray:
        return index.search(q[None, :], 10)[1][0]

    return search


def _summary(lat: np.ndarray, found: np.ndarray, kth_score: np.ndarray, x: np.ndarray, queries: np.ndarray):
    """Latency stats and recall@10, counting a hit as correct when it scores at least the true 10th neighbour.

    The tolerance matters for exact ties: generated descriptions repeat, so several vectors can share a score and
    any of them is a correct 10th neighbour.
    """
    scores = np.einsum("qd,qkd->qk", queries, x[np.maximum(found, 0)])  # (n_queries, 10) true scores of the hits
    correct = (scores >= kth_score[:, None] - 1e-5) & (found >= 0)  # faiss pads missing hits with -1
    recall = np.mean(np.minimum(correct.sum(axis=1), 10) / 10)
    return {
        "recall_at_10": round(float(recall), 4),
        "p50_ms": round(float(np.percentile(lat, 50) * 1e3), 4),
        "p99_ms": round(float(np.percentile(lat, 99) * 1e3), 4),
        "qps": round(float(len(lat) / lat.sum()), 1),
    }


def bench_size(x: np.ndarray, queries: np.ndarray, cfg: BenchConfig) -> dict[str, dict]:
    """All methods on the first len(x) vectors."""
    ids = np.arange(len(x), dtype=np.int64)
    results: dict[str, dict] = {}
    lat, truth = _time(_numpy_search(x), queries)  # the numpy scan is exact: it is the ground truth
    kth = np.einsum("qd,qd->q", queries, x[truth[:, -1]])  # (n_queries,) score of the true 10th neighbour
    summary = lambda lat, found: _summary(lat, found, kth, x, queries)  # noqa: E731
    results["numpy"] = summary(lat, truth)
    t0 = time.perf_counter()
    flat, _ = build_index(x, ids, method="flat")
    results["faiss_flat"] = {**summary(*_time(_faiss_search(flat), queries)),
                             "build_s": round(time.perf_counter() - t0, 2)}
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # build with every core, search with one
    t0 = time.perf_counter()
    hnsw, info = build_index(x, ids, method="hnsw")
    build_s = round(time.perf_counter() - t0, 2)
    faiss.omp_set_num_threads(1)
    results["faiss_hnsw"] = {**summary(*_time(_faiss_search(hnsw), queries)), "build_s": build_s,
                             "params": info["params"]}
    inner = faiss.downcast_index(hnsw.index)
    for ef in cfg.ef_search:
        inner.hnsw.efSearch = ef
        results[f"faiss_hnsw_ef{ef}"] = summary(*_time(_faiss_search(hnsw), queries))
    inner.hnsw.efSearch = HNSWParams().ef_search
    for name, res in results.items():
        res["speedup_vs_numpy"] = round(res["qps"] / results["numpy"]["qps"], 2)
    results["bank_choice"] = {"method": choose_method(len(x)), "threshold": APPROX_THRESHOLD}
    # How hard the data is: cosine of each query's 1st and 10th true neighbour, and of a random vector.
    sims = np.take_along_axis(queries @ x.T, truth, axis=1)  # (n_queries, 10)
    results["difficulty"] = {"mean_cos_top1": round(float(sims[:, 0].mean()), 4),
                             "mean_cos_top10": round(float(sims[:, 9].mean()), 4),
                             "mean_cos_random": round(float((queries @ x[:: max(1, len(x) // 1000)].T).mean()), 4)}
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=lambda s: tuple(int(v) for v in s.split(",")), default=BenchConfig.sizes)
    p.add_argument("--queries", type=int, default=BenchConfig.n_queries)
    p.add_argument("--descriptions", type=int, default=BenchConfig.n_descriptions)
    p.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "search.json")
    args = p.parse_args(argv)
    cfg = BenchConfig(sizes=args.sizes, n_queries=args.queries, n_descriptions=args.descriptions)
    faiss.omp_set_num_threads(1)
    start = time.perf_counter()
    x, queries = build_corpus(cfg)
    out: dict[str, object] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "faiss": faiss.__version__,
                    "threads_per_query": 1},
        "data": {"descriptions": cfg.n_descriptions, "real_embeddings": 2 * cfg.n_descriptions,
                 "queries": cfg.n_queries, "noise": cfg.noise, "dim": int(x.shape[1])},
    }
    for size in cfg.sizes:
        t0 = time.perf_counter()
        out[str(size)] = res = bench_size(x[:size], queries, cfg)
        print(f"size {size} ({time.perf_counter() - t0:.1f} s):")
        for name, r in res.items():
            if "qps" in r:
                print(f"  {name:18s} recall@10 {r['recall_at_10']:.3f}  p50 {r['p50_ms']:.3f} ms  "
                      f"p99 {r['p99_ms']:.3f} ms  qps {r['qps']:.0f}  x{r['speedup_vs_numpy']:.1f} vs numpy")
    out["total_s"] = round(time.perf_counter() - start, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output} ({out['total_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
