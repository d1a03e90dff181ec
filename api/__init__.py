"""loragen api: the FastAPI service, the Python SDK (`from api import Client`) and the `loragen` CLI."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]


def __getattr__(name: str):
    # The SDK imports torch and the bank; keep `import api` (and the CLI's startup) light until it is used.
    if name == "Client":
        from loragen.api.sdk import Client

        return Client
    raise AttributeError(name)
