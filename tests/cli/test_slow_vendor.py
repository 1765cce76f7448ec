"""A vendor that accepts TCP and never answers is reported as a slow vendor (issue 11): the agent
announces whom it waits for, the CLI prints that and waits past the agent's own HTTP timeout,
and the error names the server, never "is the agent running?"."""

from mqtt_licensing.servers.activation import ActivationService
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, start_broker
from tests.helpers.cli import run_cli


def test_a_silent_vendor_is_reported_as_a_slow_vendor(tmp_path, silent_server):
    vendor = ActivationService.open(tmp_path / "vendor")
    try:
        _, key = vendor.issue_license(features=["mqtt_server"])
        pub = vendor.public_key_text
    finally:
        vendor.close()
    url = f"http://127.0.0.1:{silent_server}"
    with start_broker(tmp_path / "state", vendor_url=url, vendor_public_key=pub, http_timeout=2) as broker:
        login = ["-p", str(broker.port), "-u", ADMIN, "-P", ADMIN_PASSWORD]
        # the CLI's own wait (1 s) is shorter than the agent's HTTP timeout (2 s): the progress
        # event stretches it, so the agent's verdict arrives instead of a guess about the agent
        result = run_cli("activate", *login, "-W", "1", "--key", key)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[0] == f"waiting for the vendor at {url} (up to 2 s) ...", lines
        assert lines[-1].startswith("error [server_unreachable]: ") and f"{url} did not answer within 2 s" in lines[-1]
        assert "is the licensing agent running" not in result.stderr
        assert result.stdout == ""
        assert broker.status()["state"] == "trial"  # nothing changed
