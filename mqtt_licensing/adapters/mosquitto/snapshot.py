"""What the plugin decides from: the agent's rules and the current evaluation, as text.

The format is plugin/snapshot.c's (one setting per line, tab-separated fields). Names with a
tab or a newline cannot be written in it and are left out with a warning: such a user cannot
log in through Mosquitto.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from ...agent import LicensingAgent
from ...agent.config import AgentConfig
from ...agent.metering import needs_metering
from ...core.features import MQTT_SERVER
from ...core.gate import connection_ceiling
from ...core.passwords import dummy_hash_like

log = logging.getLogger(__name__)


def _clean(*values: str) -> bool:
    return not any("\t" in v or "\n" in v or "\0" in v or not v for v in values)


def dummy_hash(users: list[str]) -> str:
    """A hash of the same scheme and cost as the admins' (unknown names cost as much as known ones)."""
    return dummy_hash_like(users[0].rsplit("\t", 1)[1]) if users else dummy_hash_like("scrypt$16384$8$1$AA==$AA==")


def build(agent: LicensingAgent, *, now: int, hold: int, dummy: str, users: list[str]) -> str:
    """The snapshot text; valid until the evaluation's own deadline, at most ``hold`` seconds."""
    config, evaluation = agent.config, agent.evaluation
    trial = evaluation.model == "trial"
    granted = set(evaluation.features)
    ceiling = connection_ceiling(evaluation)
    # In the plugin's clock (the wall): the evaluation's deadline is in the agent's licensing time.
    remaining = hold if evaluation.deadline is None else min(max(evaluation.deadline - int(agent.clock()), 0), hold)
    valid_until = now + remaining
    lines = [
        f"serving\t{int(evaluation.serving)}",
        f"anonymous\t{int(config.allow_anonymous)}",
        f"base_ok\t{int(trial or MQTT_SERVER in granted)}",
        f"ceiling\t{-1 if ceiling is None else ceiling}",
        f"admin_max\t{config.max_admin_connections}",
        f"reader_max\t{config.max_reader_connections}",
        f"valid_until\t{valid_until}",
        f"max_payload\t{config.max_payload}",
        f"metered_refused\t{int(agent.refuses_metered())}",
        f"dummy\t{dummy}",
    ]
    lines.extend(users)
    for name, spec in config.client_classes.items():
        features = frozenset(spec.get("features", []))
        ok, metered = int(trial or features <= granted), int(needs_metering(features))
        for kind, key in (("u", "usernames"), ("p", "client_id_prefixes")):
            for value in spec.get(key, []):
                if _clean(str(value)):
                    lines.append(f"class\t{kind}\t{ok}\t{metered}\t{value}")
                else:
                    log.warning("client class %s: %r cannot be matched by the Mosquitto plugin", name, value)
    return "\n".join(lines) + "\n"


def user_lines(config: AgentConfig) -> list[str]:
    """The role table's lines, admins first; read once (``password_file`` is a file)."""
    return sorted(_users(config), key=lambda line: line.split("\t")[1] != "a")


def _users(config: AgentConfig) -> Iterator[str]:
    table = {name: ("u", hashed) for name, hashed in config.user_hashes().items()}
    table.update({name: ("r", table[name][1]) for name in config.readers if name in table})
    table.update({name: ("a", hashed) for name, hashed in config.admins.items()})
    for name, (role, hashed) in table.items():
        if _clean(name, hashed):
            yield f"user\t{role}\t{name}\t{hashed}"
        else:
            log.warning("user %r cannot log in through Mosquitto (a tab or newline in the name)", name)
