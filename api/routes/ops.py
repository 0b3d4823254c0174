"""Operations: liveness, readiness and Prometheus metrics.

* ``GET /healthz``: the process answers (200 ``{"status": "ok"}``). Touches nothing else, reads no
  credentials: a probe can call it as often as it likes.
* ``GET /readyz``: 200 ``{"status": "ready"}`` when the database answers a trivial query and the
  ledger's writer thread is running; otherwise 503 problem+json with ``Retry-After`` naming what
  is wrong (so a load balancer stops sending traffic until it recovers).
* ``GET /metrics``: Prometheus' text format (see :mod:`api.metrics`). It holds no personal data,
  but it does describe the trust's activity, so it is not public. It is served to

  - a client on a loopback address (127.0.0.0/8, ::1) whose request names no proxy
    (no ``Forwarded``, ``X-Forwarded-For`` or ``X-Real-IP`` header): a Prometheus on the same
    machine, or one reaching it through an SSH tunnel; and
  - an administrator (session or bearer token), from anywhere.

  Everyone else is refused as for the ``admin.read`` action (401, or 403 for a signed-in
  non-administrator). ``datatrust serve`` lets uvicorn replace the client address with the
  ``X-Forwarded-For`` one when the connection comes from 127.0.0.1, so a reverse proxy on the
  same machine that sets it does not make the world "loopback"; one that sets no such header
  must not forward ``/metrics``.

None of them needs a database session from a request, and none returns personal data.
"""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from api.auth.principal import get_principal
from api.authz import authorise
from api.deps import InstanceDep
from api.instance import Instance
from api.metrics import MetricsDep
from ledger.errors import UnavailableError

router = APIRouter(tags=["operations"])

NO_STORE = {"Cache-Control": "no-store"}
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
METRICS_ACTION = "admin.read"


def anyone() -> None:
    """Dependency of the probes: ``public.read`` allows everyone, so no credentials are even read."""


anyone.action = "public.read"  # type: ignore[attr-defined]  # what the authorisation matrix reads


def is_local_client(request: Request) -> bool:
    """Whether *request* came from a loopback address and names no proxy in front of it."""
    if request.client is None or any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an IP address (a test client, a Unix socket)
        return False


def metrics_reader(request: Request) -> None:
    """Dependency of ``/metrics``: a loopback client, or else an administrator (see the module documentation)."""
    if is_local_client(request):
        return
    authorise(get_principal(request), METRICS_ACTION)


metrics_reader.action = METRICS_ACTION  # type: ignore[attr-defined]


@router.get("/healthz", summary="Liveness: the process answers", dependencies=[Depends(anyone)])
async def healthz() -> Response:
    """Always ``{"status": "ok"}`` while the process can answer at all."""
    return Response('{"status":"ok"}', media_type="application/json", headers=NO_STORE)


def _writer_alive(instance: Instance) -> bool:
    return instance.ledger.writer_running()


def _database_answers(instance: Instance) -> bool:
    try:
        with instance.db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()
    except SQLAlchemyError:
        return False
    return True


@router.get(
    "/readyz", summary="Readiness: the database answers and the ledger writer runs", dependencies=[Depends(anyone)]
)
def readyz(instance: InstanceDep) -> Response:
    """200 when ready; 503 problem+json with ``Retry-After`` naming what is not."""
    faults = []
    if not _database_answers(instance):
        faults.append("the database does not answer")
    if not _writer_alive(instance):
        faults.append("the ledger writer is not running")
    if faults:
        raise UnavailableError("not ready: " + "; ".join(faults))
    return Response('{"status":"ready"}', media_type="application/json", headers=NO_STORE)


@router.get(
    "/metrics",
    summary="Prometheus metrics (loopback clients and administrators)",
    response_class=Response,
    dependencies=[Depends(metrics_reader)],
)
def metrics(registry: MetricsDep) -> Response:
    """The app's metrics in Prometheus' text exposition format."""
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)
