"""Every listener of a broker config file on 127.0.0.1 and a free port.

    ports = free_listeners(path)     # {"default": 41235, "ws": 41236, "http_bind": 41237}

The shipped configs (broker_config/*.yaml) listen on the well-known MQTT, WebSocket and HTTP
numbers, which anything else on the machine may hold. A test that starts a broker from one rewrites each
``listeners.<name>.bind`` and the License page's ``http_bind`` in place, keeping comments and
layout (tests edit the text further), and checks that no listener was left on its old port.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mqtt_licensing.servers._run import free_port


def _binds(config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{name: (key, value)} for every listening address in a loaded broker config."""
    found = {name: ("bind", str(listener["bind"])) for name, listener in (config.get("listeners") or {}).items()
             if isinstance(listener, dict) and "bind" in listener}  # fmt: skip
    for section in (config.get("plugins") or {}).values():
        if isinstance(section, dict) and section.get("http_bind"):
            found["http_bind"] = ("http_bind", str(section["http_bind"]))
    return found


def free_listeners(path: Path) -> dict[str, int]:
    text = path.read_text()
    ports: dict[str, int] = {}
    for name, (key, value) in _binds(yaml.safe_load(text)).items():
        ports[name] = free_port()
        pattern = rf"^(\s*{key}:\s*){re.escape(value)}(?=\s|$)"
        text, count = re.subn(pattern, rf"\g<1>127.0.0.1:{ports[name]}", text, count=1, flags=re.M)
        assert count == 1, f"{key}: {value} not found in {path}"
    left = {name: value for name, (_, value) in _binds(yaml.safe_load(text)).items()
            if value != f"127.0.0.1:{ports.get(name)}"}  # fmt: skip
    assert not left, f"listeners left on their own ports: {left}"
    path.write_text(text)
    return ports


__all__ = ["free_listeners"]
