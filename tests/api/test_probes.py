"""GET /healthz (liveness) and GET /readyz (readiness), as load balancers and Kubernetes probe them."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from bootstrap import Pulse
from domain.errors import StoreUnavailable


def test_both_probes_answer_ok_without_a_key(client: FlaskClient) -> None:
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.get_json() == {"status": "ok"}


def test_liveness_never_touches_the_store(client: FlaskClient, pulse: Pulse, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> None:
        raise AssertionError("liveness must not reach the store")

    monkeypatch.setattr(pulse.store, "ping", unreachable)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readiness_is_503_with_retry_after_when_the_store_does_not_answer(
    client: FlaskClient, pulse: Pulse, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> None:
        raise StoreUnavailable("no route to the database")

    monkeypatch.setattr(pulse.store, "ping", down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "message": "no route to the database"}
    assert int(response.headers["Retry-After"]) > 0
    assert client.get("/healthz").status_code == 200  # alive, just not ready
    assert client.get("/v1/health").status_code == 503  # unchanged
