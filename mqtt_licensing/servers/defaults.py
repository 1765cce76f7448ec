"""The servers' defaults and names shown in ``--help``, in one module that imports nothing: the service and its
background duties use them, and the CLI shows them in ``--help`` without loading a server."""

FLOATING_TTL = 600  # seconds a lease lives; the agent renews every TTL/3
FLOATING_REFRESH_INTERVAL = 24 * 3600  # seconds between certificate refreshes with an online vendor
FLOATING_FORWARD_INTERVAL = 300  # seconds between forwarding the brokers' usage records to the vendor


WEBHOOK_TIMEOUT = 10.0  # seconds a webhook receiver may take to answer (vendor serve --webhook-timeout)

# What both servers' webhooks announce (servers/webhooks; `vendor webhook add --events`).
WEBHOOK_EVENTS = (
    "license.created",
    "license.updated",
    "license.suspended",
    "license.reinstated",
    "license.revoked",
    "activation.created",
    "activation.freed",
    "activation.released",
    "activation.cloned",
    "trial.started",
    "usage.gap",
    "order.paid",
    "order.fulfilled",
    "floating.seats_exhausted",
    "lease.cloned",
)

__all__ = [
    "FLOATING_FORWARD_INTERVAL",
    "FLOATING_REFRESH_INTERVAL",
    "FLOATING_TTL",
    "WEBHOOK_EVENTS",
    "WEBHOOK_TIMEOUT",
]
