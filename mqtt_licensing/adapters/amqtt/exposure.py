"""Refuse to serve the published example admin login beyond this machine.

The shipped configs (broker_config/*.yaml), the README and the demo publish an admin login.
Anyone who reads them could administer a broker that kept it, so a broker whose config still
holds one of those admin hashes listens on loopback addresses only; anything wider stops the
start with one line naming the fix.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

from ...core.passwords import verify_password

# The admin hash printed in broker_config/*.yaml (admin / change-me) ...
EXAMPLE_ADMIN_HASHES: Final = frozenset(
    {"scrypt$16384$8$1$d4iiZOArNXtzq464Whi6kA==$i/edM7QrYkAX0BfpAXuYiW0zgXQOtt6wT6W/UzaWv5Q="}
)
# ... and the published example passwords, for a hash of them made again with a new salt (the demo's).
EXAMPLE_PASSWORDS: Final = ("change-me", "demo-admin")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "", "0.0.0.0"-like names and host names: every interface, or unknown


def _hosts(config: dict[str, Any], agent_sections: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(where, host) of every address the broker would listen on."""
    out = []
    listeners = config.get("listeners")
    for name, listener in listeners.items() if isinstance(listeners, dict) else ():
        bind = listener.get("bind") if isinstance(listener, dict) else None
        host = str(bind).rpartition(":")[0] if bind is not None else ""
        out.append((f"listeners.{name}.bind", host))
    for section in agent_sections:
        if isinstance(section.get("http_bind"), str):
            out.append(("http_bind", section["http_bind"].rpartition(":")[0]))
    return out


def example_admins(section: dict[str, Any]) -> list[str]:
    admins = section.get("admins")
    names = []
    for name, encoded in admins.items() if isinstance(admins, dict) else ():
        if not isinstance(encoded, str):
            continue
        if encoded in EXAMPLE_ADMIN_HASHES or any(verify_password(p, encoded) for p in EXAMPLE_PASSWORDS):
            names.append(str(name))
    return names


def exposure_problem(config: dict[str, Any], agent_sections: list[dict[str, Any]]) -> str | None:
    """One line when the config listens beyond loopback with a published admin login, else None."""
    wide = [f"{where} {host or '*'}" for where, host in _hosts(config, agent_sections) if not is_loopback(host)]
    if not wide:
        return None
    admins = [name for section in agent_sections for name in example_admins(section)]
    if not admins:
        return None
    return (
        f"admin {admins[0]!r} still has the published example password and the broker would listen on "
        f"{wide[0]}: set a new one with `mqtt-licensing hash-password` (admins: in the broker config), "
        "or bind 127.0.0.1"
    )
