"""Names shared by every party of the offline and floating flows.

Armour labels (for :func:`.codes.armor` / :func:`.codes.unarmor`) name the
BEGIN/END lines of every code a person copies by hand, and request kinds are the
``kind`` field of a signed :class:`.documents.InstanceRequest`. The agent, the
vendor server and the floating server all import them from here.
"""

from __future__ import annotations

# -- armour labels ---------------------------------------------------------------
# agent -> vendor: InstanceRequest(kind="offline_request", key_digest, nonce, created_at[, activation_id])
USAGE_REQUEST = "MQTT LICENSING USAGE REQUEST"
# vendor -> agent: the vendor-signed ActivationCertificate (model "offline", request_nonce = request nonce)
USAGE_LICENSE = "MQTT LICENSING USAGE LICENSE"
# agent -> vendor: InstanceRequest(kind="offline_deactivation", activation_id, license_id)
DEACTIVATION_CODE = "MQTT LICENSING DEACTIVATION CODE"
# floating server -> vendor: InstanceRequest(kind="floating_request", key_digest, nonce, created_at)
FLOATING_REQUEST = "MQTT LICENSING FLOATING REQUEST"
# vendor -> floating server: the vendor-signed FloatingCertificate (request_nonce = request nonce)
FLOATING_CERTIFICATE = "MQTT LICENSING FLOATING CERTIFICATE"

# -- InstanceRequest kinds ---------------------------------------------------------
KIND_ACTIVATE = "activate"
KIND_CHECK_IN = "check_in"
KIND_REVIVE = "revive"  # agent -> vendor: take back its own released activation (no key kept on the broker)
KIND_HEARTBEAT = "heartbeat"  # agent -> vendor: "still alive", with terms that release silent activations
KIND_DEACTIVATE = "deactivate"
KIND_OFFLINE_REQUEST = "offline_request"
KIND_OFFLINE_DEACTIVATION = "offline_deactivation"
KIND_FLOATING_ACTIVATE = "floating_activate"
KIND_FLOATING_CHECK_IN = "floating_check_in"
KIND_FLOATING_REQUEST = "floating_request"
KIND_TRIAL = "trial"  # an instance on trial tells the vendor, which keeps the first start
# agent -> floating server (lease API; see mqtt_licensing/servers/floating)
KIND_LEASE_ACQUIRE = "lease_acquire"
KIND_LEASE_RENEW = "lease_renew"
KIND_LEASE_RELEASE = "lease_release"
KIND_USAGE_REPORT = "usage_report"  # agent -> vendor: UsageRecords of one instance
KIND_LEASE_USAGE = "lease_usage"  # agent on a lease -> floating server: its UsageRecords
KIND_FLOATING_USAGE = "floating_usage"  # floating server -> vendor: its brokers' UsageRecords
