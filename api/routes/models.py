"""Model routes: merge adapters into the base model, and classify texts with an adapter applied."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from loragen.api.routes._deps import WRITE, WRITE_ERRORS, offload, service
from loragen.api.schemas import MergeRequest, MergeResponse, PredictRequest, PredictResponse
from loragen.api.service import Service

router = APIRouter(prefix="/v1", tags=["models"])


@router.post("/merge", response_model=MergeResponse, status_code=201, operation_id="merge_adapters",
             dependencies=WRITE, responses=WRITE_ERRORS)
async def merge(body: MergeRequest, request: Request, svc: Service = Depends(service)) -> MergeResponse:
    """Merge bank adapters (weighted) into the base model and write it under the server's merge root."""
    return await offload(request, svc.merge, body)


@router.post("/predict", response_model=PredictResponse, operation_id="predict", dependencies=WRITE,
             responses=WRITE_ERRORS)
async def predict(body: PredictRequest, request: Request, svc: Service = Depends(service)) -> PredictResponse:
    """Label probabilities of the built-in suite classifier for texts, with a bank adapter applied.
    (A POST, so it needs the token like every other POST.)"""
    return await offload(request, svc.predict, body)
