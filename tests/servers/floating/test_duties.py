"""The floating server's background duties are supervised: an unexpected error in one pass is
logged with its traceback and the duty runs again (it used to end the duty silently: a bare
``gather`` of loops catching only ``LicensingError``, inside a lifespan suppressing ``Exception``)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.clients.http import HttpOptions
from mqtt_licensing.servers._files import load_or_create_token
from mqtt_licensing.servers._run import ServerThread
from mqtt_licensing.servers.floating import FloatingService, create_app
from mqtt_licensing.servers.floating.usage import vendor_duties


def _wait(condition: threading.Event, what: str) -> None:
    if not condition.wait(30):
        raise AssertionError(f"gave up waiting for {what}")


def test_a_duty_killed_by_an_unexpected_error_is_logged_and_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = FloatingService.open(tmp_path / "fls")
    real = service.vendor_url
    calls: list[int] = []
    again = threading.Event()

    def vendor_url() -> str | None:
        """The first pass dies of an error nobody expects; the ones after it work."""
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the disk went away")
        if len(calls) >= 3:
            again.set()
        return real()

    monkeypatch.setattr(service, "vendor_url", vendor_url)
    duties = vendor_duties(service, 0, 0.01, HttpOptions(timeout=5))  # forwarding only, every 10 ms
    app = create_app(service, load_or_create_token(tmp_path / "fls"), background=duties)
    caplog.set_level(logging.INFO, logger="mqtt_licensing.servers._duties")
    try:
        with ServerThread(app) as url:
            _wait(again, "the duty's passes after the failed one")
            assert httpx.get(url + "/v1/health", trust_env=False).json()["ok"] is True  # the server serves on
    finally:
        service.close()
    failed = [r for r in caplog.records if "forwarding usage to the vendor failed unexpectedly" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR
    assert failed[0].exc_info is not None and isinstance(failed[0].exc_info[1], RuntimeError)


def test_no_duty_means_no_lifespan_task(tmp_path: Path) -> None:
    service = FloatingService.open(tmp_path / "fls")
    try:
        assert vendor_duties(service, 0, 0, HttpOptions()) == []
    finally:
        service.close()
