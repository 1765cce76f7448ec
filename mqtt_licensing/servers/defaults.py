"""The floating server's tunable defaults, in one module that imports nothing: the service and its
background duties use them, and the CLI shows them in ``--help`` without loading a server."""

FLOATING_TTL = 600  # seconds a lease lives; the agent renews every TTL/3
FLOATING_REFRESH_INTERVAL = 24 * 3600  # seconds between certificate refreshes with an online vendor
FLOATING_FORWARD_INTERVAL = 300  # seconds between forwarding the brokers' usage records to the vendor

__all__ = ["FLOATING_FORWARD_INTERVAL", "FLOATING_REFRESH_INTERVAL", "FLOATING_TTL"]
