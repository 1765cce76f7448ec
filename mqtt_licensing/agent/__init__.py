"""The licensing agent service: persistence, background check-in and lease renewal,
command handling and connection gating. Broker-agnostic: a broker adapter hands it
connections and messages through :class:`~.service.Transport`.
"""

from .config import AgentConfig
from .service import LicensingAgent, Transport

__all__ = ["AgentConfig", "LicensingAgent", "Transport"]
