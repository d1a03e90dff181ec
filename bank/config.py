"""`SectionedConfig`: the one implementation of "a config made of dataclass sections", saved as JSON or YAML.

Hypernet and meta configs are dataclasses whose fields are themselves dataclasses (model, train, ...). They share
serialisation here: `to_dict`, `from_dict` (unknown keys from a newer loragen are dropped with a warning naming
them, as PEFT does for its configs) and `from_file`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, TypeVar

from loragen.bank.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T", bound="SectionedConfig")


def check(problems: list[str], ok: bool, message: str) -> None:
    """Record `message` when a config check fails; configs collect every problem, then `raise_problems` once."""
    if not ok:
        problems.append(message)


def raise_problems(owner: str, problems: list[str]) -> None:
    """Raise one `ConfigError` listing every problem found in `owner` (a config class name), if any."""
    if problems:
        raise ConfigError(f"invalid {owner}: " + "; ".join(problems))


class SectionedConfig:
    """Mixin for a dataclass whose every field is a dataclass section with a default factory."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Rebuild from `to_dict` output; missing sections/keys take defaults, unknown ones are dropped with a warning.

        Raises:
            ConfigError: a section is not a mapping, or a section's own checks fail (naming the field); a
                `ValueError`, so callers catching that keep working.
        """
        parts = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            section_cls = type(f.default_factory())  # type: ignore[misc]
            raw = data.get(f.name, {})
            if not isinstance(raw, dict):
                raise ConfigError(f"{cls.__name__}.{f.name}: expected a mapping, got {type(raw).__name__}")
            known = {g.name for g in dataclasses.fields(section_cls)}
            unknown = sorted(set(raw) - known)
            if unknown:
                log.warning("%s.%s: ignoring unknown keys %s (written by a newer loragen?)", cls.__name__, f.name,
                            unknown)
            try:
                parts[f.name] = section_cls(**{k: v for k, v in raw.items() if k in known})
            except TypeError as err:  # a value of the wrong type, e.g. a string where a number belongs
                raise ConfigError(f"{cls.__name__}.{f.name}: {err}; check the types of its values.") from None
        return cls(**parts)

    @classmethod
    def from_file(cls: type[T], path: str | Path) -> T:
        """Read a JSON or YAML file holding (some of) the sections.

        Raises:
            ConfigError: the file is missing or does not parse, or a section's checks fail.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file; give a JSON or YAML {cls.__name__} file.")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as err:
                raise _parse_error(path, "YAML", err) from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise _parse_error(path, "JSON", err) from None
        if not isinstance(data, dict):
            sections = ", ".join(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
            raise ConfigError(f"{path}: expected a mapping with sections ({sections}), got {type(data).__name__}")
        return cls.from_dict(data)


def _parse_error(path: Path, kind: str, err: Exception) -> ConfigError:
    return ConfigError(f"{path}: not valid {kind} ({' '.join(str(err).split())}); fix the file.")
