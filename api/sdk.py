"""The Python SDK: one `Client`, in-process on a local bank or over HTTP, with the same methods and typed results.

Usage::

    from loragen.api import Client

    client = Client()                                          # in-process, on the local bank ($LORAGEN_HOME)
    client = Client(url="http://127.0.0.1:8000", token="...")  # a running `loragen serve`

    result = client.generate("label 0 if the sentence is Polish, label 1 if it is Czech", method="retrieve")
    print(result.id, result.uncertainty, [n.task for n in result.neighbours])
    path = client.download(result.id, "out/adapter")          # a PEFT directory: PeftModel.from_pretrained(...)

Methods that take one item also take a list and then return a list, in the same order (`generate`, `get`,
`download`, `search`, `upload`). Every failure the server would answer with a 4xx/5xx raises `ClientError`
with the same `status`, `code` and message in both modes.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from loragen.api.archive import pack, unpack
from loragen.api.errors import to_api_error
from loragen.api.schemas import (
    AdapterInfo,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    MergeRequest,
    MergeResponse,
    PredictRequest,
    PredictResponse,
    ReindexResponse,
    ScoresResponse,
    SearchResponse,
)
from loragen.api.settings import Settings
from loragen.bank.errors import LoragenError

T = TypeVar("T")
R = TypeVar("R")


class ClientError(LoragenError):
    """A request the service refused (or failed), with the HTTP status and error code it maps to.

    Attributes:
        status: HTTP status code (also in-process: the code the server would have answered).
        code: machine-readable code ("not_found", "unauthorized", "bad_archive", ...).
        message: what was wrong and what to do.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class _Local:
    """Calls the service in this process; errors are mapped exactly as the HTTP layer maps them."""

    def __init__(self, settings: Settings) -> None:
        from loragen.api.service import Service

        self.service = Service.start(settings)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.service, name)(*args, **kwargs)
        except Exception as err:
            api = to_api_error(err)
            if api is None:
                raise
            raise ClientError(api.status, api.code, api.message) from err

    def download(self, adapter_id: str, directory: Path) -> Path:
        return self.call("export", adapter_id, directory)

    def upload(self, directory: Path, description: str, task: str | None) -> AdapterInfo:
        return self.call("upload_dir", directory, description=description, task=task)

    def close(self) -> None:
        self.service.close()


class _Http:
    """Talks to a running server with httpx."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def request(self, method: str, path: str, model: type[T] | None, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        return response if model is None else model.model_validate(response.json())

    def call(self, name: str, *args: Any) -> Any:
        method, path, model, payload = _HTTP_ROUTES[name](*args)
        return self.request(method, path, model, **payload)

    def download(self, adapter_id: str, directory: Path) -> Path:
        response = self.request("GET", f"/v1/adapters/{adapter_id}/peft", None)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            root = unpack(response.content, tmp / "adapter")
            if directory.exists():
                shutil.rmtree(directory)
            root.rename(directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    def upload(self, directory: Path, description: str, task: str | None) -> AdapterInfo:
        files = {"archive": ("adapter.zip", io.BytesIO(pack(directory)), "application/zip")}
        data = {"description": description, **({"task": task} if task else {})}
        return self.request("POST", "/v1/adapters", AdapterInfo, files=files, data=data)

    def close(self) -> None:
        self.http.close()


# name -> (*args) -> (HTTP method, path, response model, httpx kwargs)
_HTTP_ROUTES: dict[str, Callable[..., tuple[str, str, Any, dict[str, Any]]]] = {
    "generate": lambda req: ("POST", "/v1/adapters:generate", GenerateResponse, {"json": req.model_dump()}),
    "scores": lambda g: ("GET", f"/v1/generations/{g}/scores", ScoresResponse, {}),
    "get": lambda i: ("GET", f"/v1/adapters/{i}", AdapterInfo, {}),
    "search": lambda q, k: ("GET", "/v1/search", SearchResponse, {"params": {"q": q, "k": k}}),
    "merge": lambda req: ("POST", "/v1/merge", MergeResponse, {"json": req.model_dump()}),
    "predict": lambda req: ("POST", "/v1/predict", PredictResponse, {"json": req.model_dump()}),
    "reindex": lambda *_: ("POST", "/v1/bank/reindex", ReindexResponse, {}),
    "health": lambda: ("GET", "/healthz", HealthResponse, {}),
}


def _error_from(response: Any) -> ClientError:
    try:
        detail = response.json()["error"]
        return ClientError(detail["status"], detail["code"], detail["message"])
    except (ValueError, KeyError, TypeError):
        return ClientError(response.status_code, "http_error", response.text[:500])


class Client:
    """loragen's SDK. `Client()` runs in-process on the local bank; `Client(url=..., token=...)` talks HTTP.

    Args:
        url: base URL of a `loragen serve` server; None runs in-process.
        token: the server's API token (HTTP only), sent with every request: a server with a token needs it for
            reads too, unless it opens reads (`serve --open-reads`).
        bank: path of the bank's DuckDB file (in-process only; default: $LORAGEN_HOME / the user data dir).
        settings: full service settings (in-process only; overrides `bank`).
        timeout: seconds to wait for an HTTP response.
    """

    def __init__(self, url: str | None = None, *, token: str | None = None, bank: str | Path | None = None,
                 settings: Settings | None = None, timeout: float = 300.0) -> None:
        if url is not None:
            self._backend: _Local | _Http = _Http(url, token, timeout)
        else:
            self._backend = _Local(settings or Settings.from_env(bank_path=bank))
        self.url = url

    def generate(self, description: str | Sequence[str], *, method: str = "retrieve",
                 labels: Sequence[str] | None = None,
                 examples: Sequence[tuple[str, int]] | Sequence[tuple[str, str]] | None = None,
                 base_model: str | None = None, samples: int = 1, seed: int | None = None, score: bool = True,
                 inputs: Sequence[str] | None = None) -> GenerateResponse | list[GenerateResponse]:
        """Generate and store an adapter for each description (one description in, one result out).

        `base_model` (a packaged name or a local transformers directory the server accepts) defaults to the
        method's own: its checkpoint's, for retrieval the nearest bank adapter's. `examples` are (text, label
        index) pairs of a classification task or (input, output) string pairs of a generation task. The model-based
        uncertainty and trust scores are in the result (the request's `score="inline"`; a raw HTTP request defers
        them by default); `score=False` skips them (much faster for a generated adapter; the result says so).
        `inputs`: unlabeled texts of the task for those scores (the trust score then checks that the adapter
        does not give them all one label).

        Returns:
            The stored adapter id(s), uncertainty scores and nearest bank neighbours.
        """
        def one(text: str) -> GenerateResponse:
            request = GenerateRequest(
                description=text, labels=list(labels) if labels else None, base_model=base_model, method=method,
                examples=[{"input": t, "output": y} if isinstance(y, str) else {"text": t, "label": y}
                          for t, y in examples] if examples else None, samples=samples,
                seed=seed, score="inline" if score else "off", inputs=list(inputs) if inputs else None)
            return self._backend.call("generate", request)

        return _each(description, one)

    def scores(self, generation: str) -> ScoresResponse:
        """The uncertainty and trust scores of a generation a raw HTTP request made with `score="deferred"` (the
        service's default), computed on the first call."""
        return self._backend.call("scores", generation)

    def get(self, adapter_id: str | Sequence[str]) -> AdapterInfo | list[AdapterInfo]:
        """Adapter metadata for an id (or a list of ids)."""
        return _each(adapter_id, lambda i: self._backend.call("get", i))

    def download(self, adapter_id: str | Sequence[str], directory: str | Path) -> Path | list[Path]:
        """Write adapter(s) as PEFT directories: `directory` for one id, `directory/<id>` for a list."""
        if isinstance(adapter_id, str):
            return self._backend.download(adapter_id, Path(directory))
        return [self._backend.download(i, Path(directory) / i) for i in adapter_id]

    def upload(self, directory: str | Path | Sequence[str | Path], *, description: str | Sequence[str],
               task: str | None = None) -> AdapterInfo | list[AdapterInfo]:
        """Validate PEFT directory(ies) and add them to the bank with their description(s)."""
        if isinstance(directory, (str, Path)):
            if not isinstance(description, str):
                raise TypeError("one directory takes one description string")
            return self._backend.upload(Path(directory), description, task)
        descriptions = [description] * len(directory) if isinstance(description, str) else list(description)
        if len(descriptions) != len(directory):
            raise ValueError(f"{len(directory)} directories but {len(descriptions)} descriptions")
        return [self._backend.upload(Path(d), t, task) for d, t in zip(directory, descriptions)]

    def search(self, query: str | Sequence[str], k: int = 5) -> SearchResponse | list[SearchResponse]:
        """Bank adapters whose descriptions are closest to the query (or to each query)."""
        return _each(query, lambda q: self._backend.call("search", q, k))

    def merge(self, adapter_ids: str | Sequence[str], *, output: str, weights: Sequence[float] | None = None,
              method: str = "linear", rank: int | None = None, base_model: str | None = None) -> MergeResponse:
        """Merge bank adapters into their base model (or `base_model`); the server writes it to
        `<merge root>/<output>`."""
        ids = [adapter_ids] if isinstance(adapter_ids, str) else list(adapter_ids)
        request = MergeRequest(adapter_ids=ids, weights=list(weights) if weights else None, method=method,
                               rank=rank, base_model=base_model, output=output)
        return self._backend.call("merge", request)

    def predict(self, texts: str | Sequence[str], *, adapter_id: str | None = None,
                num_labels: int | None = None) -> PredictResponse:
        """Label probabilities of the prototype classifier on the adapter's (encoder) base model for text(s), with
        a bank adapter applied (None: the packaged MiniLM's). The label count defaults to that of the adapter's
        task. A causal-LM adapter is refused (422): `loragen predict` prints its completions."""
        batch = [texts] if isinstance(texts, str) else list(texts)
        request = PredictRequest(adapter_id=adapter_id, texts=batch, num_labels=num_labels)
        return self._backend.call("predict", request)

    def reindex(self) -> ReindexResponse:
        """Rebuild the bank's search indexes now."""
        return self._backend.call("reindex")

    def health(self) -> HealthResponse:
        """Version, ready methods and bank size."""
        return self._backend.call("health")

    def close(self) -> None:
        """Close the HTTP connection or the local bank."""
        self._backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _each(items: T | Sequence[T], fn: Callable[[T], R]) -> R | list[R]:
    """Apply `fn` to one item, or to each of a list (returning a list): the SDK's one-or-batch rule."""
    if isinstance(items, str):
        return fn(items)  # type: ignore[arg-type]
    return [fn(x) for x in items]  # type: ignore[union-attr]
