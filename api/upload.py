"""What an uploaded adapter must satisfy beyond the PEFT format, and what of it the bank keeps.

`load_peft` checks the format (config against weights, dtypes, lora_alpha); here: the form fields' limits, a
ΔW that stays finite once scaled, and the metadata. An upload is always kind "uploaded": loragen metadata in its
safetensors header (kind, provenance, metrics, ...) is a claim nobody checked, so it is dropped, and only PEFT's
task type is kept (so the download loads as it was saved).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from loragen.api.errors import ApiError
from loragen.bank.errors import NonFiniteError
from loragen.bank.generator import MAX_DESCRIPTION_CHARS
from loragen.bank.lora import LoraAdapter, canonicalize

log = logging.getLogger(__name__)

MAX_TASK_CHARS = 200  # task names are short ids ("lang/pl-vs-cs"); every search hit repeats them
TASK_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters
# PEFT's TaskType values.
PEFT_TASK_TYPES = frozenset({"SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS",
                             "FEATURE_EXTRACTION"})


def check_upload_text(description: str, task: str | None) -> None:
    """Refuse an empty or too long description, or a task name that is too long or has control characters.

    Raises:
        ApiError: 422 naming every problem.
    """
    problems = []
    if not description.strip():
        problems.append("description is empty; say what the adapter does")
    elif len(description) > MAX_DESCRIPTION_CHARS:
        problems.append(f"description has {len(description)} characters; the limit is {MAX_DESCRIPTION_CHARS}")
    if task is not None and not (0 < len(task) <= MAX_TASK_CHARS and task.isprintable()):
        problems.append(f"task must be a name of 1 to {MAX_TASK_CHARS} printable characters (got {len(task)} "
                        "characters)")
    if problems:
        raise ApiError(422, "invalid_request", "; ".join(problems) + ".")


def checked_upload(adapter: LoraAdapter) -> LoraAdapter:
    """`adapter` with only the metadata an upload may carry, after checking that its scaled ΔW is finite.

    Finite factors and a sane lora_alpha can still give a ΔW whose canonical factors overflow the adapter's
    dtype; the bank would then store Inf or zeros. Canonicalising here finds that before anything is written.

    Raises:
        NonFiniteError: NaN/Inf factors, or a ΔW that overflows.
    """
    adapter.check_finite()
    try:
        canonicalize(adapter.to("cpu")).check_finite()
    except NonFiniteError:
        raise NonFiniteError(f"ΔW = (lora_alpha / r)·B·A overflows {adapter.dtype} (lora_alpha="
                             f"{adapter.lora_alpha:g}, r={adapter.r}): the factors or lora_alpha are far too large "
                             "for a LoRA adapter.") from None
    peft = adapter.metadata.get("peft")
    task_type = peft.get("task_type") if isinstance(peft, dict) else None
    dropped = sorted(k for k in adapter.metadata if k != "peft")
    if dropped:
        log.info("upload: header metadata %s not taken over (an upload is kind 'uploaded')", dropped)
    metadata = {"peft": {"task_type": task_type}} if task_type in PEFT_TASK_TYPES else {}
    return replace(adapter, metadata=metadata)
