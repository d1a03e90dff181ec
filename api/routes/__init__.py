"""HTTP routes, one module per concern: adapters, bank, models (merge/predict), operations (health/metrics)."""

from loragen.api.routes import adapters, bank, models, ops

ROUTERS = (adapters.router, bank.router, models.router, ops.router)
