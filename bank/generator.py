"""What every adapter generator (retrieval, the ICM-LoRA CVAE, ABMLL) takes and gives: one shared contract.

The evaluation harness, the service and the CLI talk to generators only through `GenerationRequest` and the
`AdapterGenerator` protocol, so a new method plugs in without touching them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.errors import ConfigError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.peft_format import save_peft

MAX_DESCRIPTION_CHARS = 2000
MAX_EXAMPLES = 256


@dataclass(frozen=True)
class GenerationRequest:
    """A request for an adapter.

    Args:
        description: the task in plain language ("label 0 if the sentence is Polish, label 1 if it is Czech").
        labels: optional class names in label order (like a zero-shot classifier's candidate labels).
        examples: optional examples: (text, label index) pairs for a classification task, or (input, output)
            string pairs for a generation task (all of one kind).
        base_model: the base model the adapter is for.
        n_samples: how many adapters: 1 gives the generator's point estimate (posterior / latent mean),
            more gives that many samples.
        seed: seed for sampling; same request and seed give the same adapters.
        exclude_tasks: bank task names a generator must not use (leave-one-out evaluation of retrieval).

    Raises:
        ConfigError: empty or oversized description, bad labels, examples or sample count (a `ValueError`).
    """

    description: str
    labels: tuple[str, ...] | None = None
    examples: tuple[tuple[str, int], ...] | tuple[tuple[str, str], ...] | None = None
    base_model: str = DEFAULT_BASE_MODEL
    n_samples: int = 1
    seed: int | None = None
    exclude_tasks: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        problems = []
        text = self.description.strip() if isinstance(self.description, str) else ""
        if not text:
            problems.append("description is empty; describe the task, e.g. 'label 0 if Polish, label 1 if Czech'")
        elif len(self.description) > MAX_DESCRIPTION_CHARS:
            problems.append(f"description has {len(self.description)} characters; the limit is {MAX_DESCRIPTION_CHARS}")
        if self.labels is not None:
            if len(self.labels) < 2 or any(not str(lab).strip() for lab in self.labels):
                problems.append(f"labels must name at least two non-empty classes, got {list(self.labels)}: label "
                                "names are a classification task's classes in label order; a generation task "
                                "(free-text output) takes none, so leave --labels out and describe the output in "
                                "the description")
            object.__setattr__(self, "labels", tuple(str(lab) for lab in self.labels))
        if self.examples is not None:
            if len(self.examples) > MAX_EXAMPLES:
                problems.append(f"{len(self.examples)} examples given; the limit is {MAX_EXAMPLES}")
            # a pair is (str, int) or (str, str); type() rather than isinstance keeps bools out
            bad = [e for e in self.examples
                   if not (len(e) == 2 and isinstance(e[0], str) and type(e[1]) in (int, str))]
            kinds = {type(e[1]) for e in self.examples if not bad}
            if bad or len(kinds) > 1:
                problems.append("examples must be all (text, label index) pairs, e.g. ('Dzień dobry', 0), or all "
                                f"(input, output) string pairs of a generation task, e.g. ('2024-03-05', 'March 5, "
                                f"2024'); got {(bad or list(self.examples))[:2]}")
            n = len(self.labels) if self.labels else None
            if n and not bad and kinds == {int} and any(not 0 <= e[1] < n for e in self.examples):
                problems.append(f"example labels must be in [0, {n - 1}] for {n} labels")
            if self.labels and kinds == {str}:
                problems.append("label names and (input, output) examples do not go together: a generation task "
                                "has no labels; leave --labels out")
            object.__setattr__(self, "examples", () if bad or len(kinds) > 1 else tuple(
                (t, y) for t, y in self.examples))
        if not 1 <= self.n_samples <= 256:
            problems.append(f"n_samples must be in [1, 256], got {self.n_samples}")
        if problems:
            raise ConfigError("invalid generation request: " + "; ".join(problems))

    @property
    def num_labels(self) -> int:
        """Classes of the requested task: the named labels, else the largest example label + 1 (at least 2; 2 for
        a generation task, whose likelihood does not use it)."""
        if self.labels:
            return len(self.labels)
        if self.generation_examples:
            return 2
        return max(2, 1 + max((y for _, y in self.examples or ()), default=1))

    @property
    def generation_examples(self) -> bool:
        """Whether the examples are (input, output) pairs of a generation task (not labelled texts)."""
        return bool(self.examples) and isinstance(self.examples[0][1], str)


@runtime_checkable
class AdapterGenerator(Protocol):
    """Anything that turns a `GenerationRequest` into adapters."""

    name: str

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        """Return `request.n_samples` adapters (the point estimate first when n_samples == 1)."""
        ...


def save_adapters(adapters: Sequence[LoraAdapter], out: str | os.PathLike) -> list[Path]:
    """Write generated adapters as PEFT directories: `out` itself for one, `out/sample-<i>` for several.

    Returns:
        The directories written, in the order of `adapters`.
    """
    out = Path(out)
    if len(adapters) == 1:
        return [save_peft(adapters[0], out)]
    return [save_peft(adapter, out / f"sample-{i}") for i, adapter in enumerate(adapters)]
