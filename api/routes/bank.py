"""Bank routes: description search and re-indexing."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from loragen.api.routes._deps import READ, READ_ERRORS, WRITE, WRITE_ERRORS, offload, service
from loragen.api.schemas import ReindexResponse, SearchResponse
from loragen.api.service import Service

router = APIRouter(prefix="/v1", tags=["bank"])


@router.get("/search", response_model=SearchResponse, operation_id="search_adapters", dependencies=READ,
            responses=READ_ERRORS)
async def search(request: Request, q: str = Query(min_length=1, max_length=2000, description="task description"),
                 k: int = Query(5, ge=1, le=100), svc: Service = Depends(service)) -> SearchResponse:
    """Bank adapters whose task descriptions are closest to `q`."""
    return await offload(request, svc.search, q, k)


@router.post("/bank/reindex", response_model=ReindexResponse, operation_id="reindex_bank", dependencies=WRITE,
             responses=WRITE_ERRORS)
async def reindex(request: Request, svc: Service = Depends(service)) -> ReindexResponse:
    """Rebuild the bank's search indexes now (the same job the schedule runs)."""
    return await offload(request, svc.reindex, "request")
