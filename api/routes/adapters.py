"""Adapter routes: generate (and a deferred generation's scores), metadata, PEFT download, upload."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile

from loragen.api.archive import ArchiveLimits, pack, unpack
from loragen.api.errors import ApiError
from loragen.api.routes._deps import READ, READ_ERRORS, WRITE, WRITE_ERRORS, offload, service
from loragen.api.schemas import AdapterInfo, GenerateRequest, GenerateResponse, ScoresResponse, score_mode
from loragen.api.scratch import make_scratch_dir
from loragen.api.service import Service
from loragen.api.upload import MAX_TASK_CHARS, TASK_PATTERN
from loragen.bank.errors import LoragenError
from loragen.bank.generator import MAX_DESCRIPTION_CHARS

router = APIRouter(prefix="/v1", tags=["adapters"])


@router.post("/adapters:generate", response_model=GenerateResponse, operation_id="generate_adapter",
             dependencies=WRITE, responses=WRITE_ERRORS)
async def generate(body: GenerateRequest, request: Request, svc: Service = Depends(service),
                   score: str | None = Query(None, description="overrides the body's `score`: deferred, inline "
                                             "(or 1/true) or off (or 0/false)")) -> GenerateResponse:
    """Generate an adapter for a task description, store it in the bank and return its id, the cheap uncertainty
    signals and the nearest bank neighbours. The model-based scores (uncertainty on probe inputs, trust) come from
    `scores_url` by default (`score=deferred`), in the response with `score=inline`."""
    if score is not None:
        try:
            body = body.model_copy(update={"score": score_mode(score)})
        except ValueError as err:
            raise ApiError(422, "invalid_request", str(err)) from None
    return await offload(request, svc.generate, body)


@router.get("/generations/{generation}/scores", response_model=ScoresResponse, operation_id="generation_scores",
            dependencies=READ, responses=READ_ERRORS)
async def generation_scores(generation: str, request: Request, svc: Service = Depends(service)) -> ScoresResponse:
    """A `score=deferred` generation's uncertainty and trust scores: computed on the first GET (the base model
    runs on probe texts for its adapter and its peer methods' adapters), then answered from memory. 404 when the
    server no longer holds the generation (it keeps the last LORAGEN_DEFERRED_SCORES, until a restart)."""
    return await offload(request, svc.scores, generation)


@router.get("/adapters/{adapter_id}", response_model=AdapterInfo, operation_id="get_adapter", dependencies=READ,
            responses=READ_ERRORS)
async def get_adapter(adapter_id: str, request: Request, svc: Service = Depends(service)) -> AdapterInfo:
    """An adapter's metadata."""
    return await offload(request, svc.get, adapter_id)


@router.get("/adapters/{adapter_id}/peft", response_class=Response, operation_id="download_adapter",
            dependencies=READ, responses={**READ_ERRORS, 200: {"content": {"application/zip": {}},
                                       "description": "the PEFT adapter directory as a zip archive"}})
async def download(adapter_id: str, request: Request, svc: Service = Depends(service)) -> Response:
    """The adapter as a PEFT directory (adapter_config.json + adapter_model.safetensors) in a zip archive."""
    data = await offload(request, _export_zip, svc, adapter_id)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{_safe_filename(adapter_id)}.zip"'})


@router.post("/adapters", response_model=AdapterInfo, status_code=201, operation_id="upload_adapter",
             dependencies=WRITE, responses=WRITE_ERRORS)
async def upload(request: Request, archive: UploadFile = File(description="zip of a PEFT adapter directory"),
                 description: str = Form(min_length=1, max_length=MAX_DESCRIPTION_CHARS),
                 task: str | None = Form(None, min_length=1, max_length=MAX_TASK_CHARS, pattern=TASK_PATTERN,
                                         description="name of the task the adapter solves (no control characters)"),
                 svc: Service = Depends(service)) -> AdapterInfo:
    """Upload a PEFT adapter (zip archive) with its description into the bank. The archive is checked (paths,
    links, sizes, file types) and the adapter validated (format, config against weights, base model, shapes,
    finiteness) before anything is stored. The adapter is stored as kind "uploaded"; loragen metadata in its
    safetensors header (provenance, kind, metrics) is not taken over."""
    return await offload(request, _import_zip, svc, archive, description, task)


def _export_zip(svc: Service, adapter_id: str) -> bytes:
    tmp = make_scratch_dir("export")
    try:
        return pack(svc.export(adapter_id, tmp / "adapter"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _import_zip(svc: Service, archive: UploadFile, description: str, task: str | None) -> AdapterInfo:
    s = svc.settings
    limits = ArchiveLimits(max_members=s.max_archive_members, max_member_bytes=s.max_member_bytes,
                           max_ratio=s.max_compression_ratio)
    tmp = make_scratch_dir("upload")
    directory = None
    try:
        directory = unpack(archive.file, tmp / "adapter", limits=limits)
        return svc.upload_dir(directory, description=description, task=task)
    except LoragenError as err:
        if directory is None:
            raise
        raise _relative_to_upload(err, directory) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _relative_to_upload(err: LoragenError, directory: Path) -> LoragenError:
    """`err` with the scratch folder cut out of its message: "adapter_model.safetensors: ..." is what the client
    can act on; where the server unpacked the archive is none of its business."""
    text = str(err).replace(f"{directory}{os.sep}", "").replace(str(directory), "the uploaded adapter")
    return err if text == str(err) else type(err)(text)


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100] or "adapter"
