"""The licensing agent: persistence, background check-in and lease renewal, request handling
and connection gating. Broker-agnostic: a broker adapter hands it connections and messages
through :class:`Transport`.
"""

from .access import Transport
from .agent import LicensingAgent
from .config import AgentConfig
from .sources import LicenseSource

__all__ = ["AgentConfig", "LicenseSource", "LicensingAgent", "Transport"]
