"""`mqtt-licensing demo --store`, driven by its printed instructions: buy in the store
(localstripe), the key arrives as an e-mail (printed and saved as .eml), activate with it."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.servers._run import free_port
from tests.shop.support import card_token, order_form, pay

BIN = Path(sys.executable).parent


def _whole_key_mail(mail_dir: Path) -> str | None:
    """The attached key of the first mail, once the file is complete (every MIME part closed)."""
    found = sorted(mail_dir.glob("*.eml"))
    if not found:
        return None
    msg = email.message_from_bytes(found[0].read_bytes(), policy=email.policy.default)
    if any(part.defects for part in msg.walk()):
        return None
    attachment = next(msg.iter_attachments(), None)
    return None if attachment is None else str(attachment.get_content())


@pytest.mark.timeout(120)
def test_demo_store_purchase_email_activate(tmp_path: Path) -> None:
    port, vendor_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = [str(BIN / "mqtt-licensing"), "demo", "--dir", "demo-data", "--store", "--port", str(port),
           "--vendor-port", str(vendor_port),
           "--http-port", str(free_port()), "--ws-port", str(free_port())]  # fmt: skip
    errors = tmp_path / "demo.err"  # the demo's log: a start that fails says why in the assertion
    with errors.open("w") as err:
        demo = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        while not any(ln.startswith("  upgrade:") for ln in lines):
            line = demo.stdout.readline()
            assert line, "\n".join(lines) + "\n" + errors.read_text()[-3000:]
            lines.append(line.rstrip("\n"))
        text = "\n".join(lines)
        store_url = re.search(r"buy a license\s+: (\S+)/shop/", text).group(1)  # type: ignore[union-attr]
        stripe_url = re.search(r"localstripe at (\S+),", text).group(1)  # type: ignore[union-attr]
        export = next(ln.strip() for ln in lines if ln.strip().startswith("export "))
        activate = next(ln.strip() for ln in lines if ln.strip().endswith("--key-file key.txt"))

        with httpx.Client(base_url=store_url, timeout=20, trust_env=False) as http:
            order_id = order_form(http, {"mqtt_server": 1})
            assert pay(http, order_id, card_token(stripe_url)).status_code == 200
        mail_dir = tmp_path / "demo-data" / "store" / "mail"
        deadline = time.monotonic() + 30
        while (key := _whole_key_mail(mail_dir)) is None:  # the writer may be half-way through the file
            assert time.monotonic() < deadline, "no e-mail arrived"
            time.sleep(0.1)
        (tmp_path / "key.txt").write_text(key)
        result = subprocess.run(["bash", "-c", f"{export}; {activate}"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0 and "active" in result.stdout, result.stdout + result.stderr
    finally:
        demo.terminate()
        demo.wait(20)
