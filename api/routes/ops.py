"""Operations routes: health and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from loragen.api.errors import redact
from loragen.api.lookup import shipped_generators
from loragen.api.routes._deps import READ, READ_ERRORS, offload, service
from loragen.api.schemas import HealthResponse
from loragen.api.service import Service

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, operation_id="health")
async def health(request: Request, svc: Service = Depends(service)) -> HealthResponse:
    """Liveness and what the server can do: version, ready generation methods, bank size, shipped generators. The
    one route that never needs the token."""
    health = await offload(request, svc.health)
    # Unauthenticated clients read this: why a method is unavailable, without where its checkpoint would be.
    unavailable = {m: redact(why, svc.settings) for m, why in health.unavailable.items()}
    return health.model_copy(update={"unavailable": unavailable, "shipped": shipped_generators()})


@router.get("/metrics", response_class=Response, operation_id="metrics", dependencies=READ,
            responses={**READ_ERRORS,
                       200: {"content": {"text/plain": {}}, "description": "Prometheus exposition format"}})
async def metrics(request: Request, svc: Service = Depends(service)) -> Response:
    """Prometheus metrics: requests, latency, generations, re-indexes, bank size."""
    health = await offload(request, svc.health)
    request.app.state.metrics.adapters.set(health.adapters)
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
