"""Regenerate tests/e2e/openapi.json from the app: `python -m tests.e2e.update_openapi` (review the diff)."""

from __future__ import annotations

import json
from pathlib import Path

from loragen.api.app import create_app
from loragen.api.settings import Settings

PATH = Path(__file__).with_name("openapi.json")


def main() -> None:
    schema = create_app(settings=Settings(reindex_interval_s=0)).openapi()
    PATH.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
