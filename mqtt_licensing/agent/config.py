"""The agent's configuration, as written under the plugin entry in broker_config/*.yaml.

Plain types only (so the amqtt plugin loader, which is strict about unknown keys,
can fill it from YAML). :meth:`AgentConfig.settings` checks it once and parses what needs parsing
(the pinned vendor key, limits, HTTP options, alarm thresholds, the password file) into a frozen
:class:`AgentSettings`: nothing reads a file again while the agent runs.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..clients.http import HttpOptions
from ..core import instance_label
from ..core.errors import ErrorCode, LicensingError
from ..core.features import MQTT_SERVER, validate_features
from ..core.passwords import is_password_hash
from ..core.protocol import DEFAULT_MAX_PAYLOAD
from ..core.signing import public_key_from_text
from ..core.state import Limits
from .alarms import AlarmSettings
from .provisioning import ConfiguredKey, UsageLicenseFile, configured_key, usage_license_file

log = logging.getLogger(__name__)

_SERVER_ONLY = frozenset({MQTT_SERVER})  # what a client of no client class needs


@dataclass(frozen=True)
class AgentSettings:
    """The config's parsed values, made once at start (config errors are one line, raised then)."""

    vendor_key: Ed25519PublicKey
    limits: Limits
    http: HttpOptions
    alarms: AlarmSettings
    user_hashes: Mapping[str, str]  # users: plus password_file, read once
    floating_servers: tuple[str, ...]
    license_key: ConfiguredKey | None = None  # held with no operator action (agent/provisioning.py)
    usage_license: UsageLicenseFile | None = None  # an offline usage license installed at start
    instance_label: str | None = None  # cleaned (core/instance_label.py); signed into every request


@dataclass
class AgentConfig:
    # Where the instance key and license state live (created on first start).
    state_dir: str = "./license-state"
    # The vendor activation server and its pinned public key (text, or a path to vendor.pub).
    vendor_url: str | None = None
    vendor_public_key: str = ""
    # username -> scrypt hash (`mqtt-licensing hash-password`). Admins always connect and manage the license.
    admins: dict[str, str] = field(default_factory=dict)
    # Optional non-admin users with passwords; anyone else connects only if allow_anonymous.
    users: dict[str, str] = field(default_factory=dict)
    allow_anonymous: bool = True
    # Usernames (besides admins) that may read $license/status and $license/events.
    readers: list[str] = field(default_factory=list)
    # Feature classes of clients, e.g. {"snowflake_bridge": {"features": ["iot_bridge_snowflake"],
    #   "usernames": ["bridge"], "client_id_prefixes": ["snowflake-"]}}
    client_classes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # Disconnect existing non-admin clients when the license stops serving (default: keep them).
    enforce_existing: bool = False
    # Evaluation limits: may only be lowered (2 h and 25 connections at most).
    trial_seconds: int = 7200
    trial_max_connections: int = 25
    # Online check-in period and the retry period while the server cannot be reached.
    check_in_interval: float = 86400.0
    retry_interval: float = 60.0
    # A clock that runs back by more than this is reported as clock_tampered.
    clock_tolerance: int = 300
    # Floating auto-activation: lease a seat at start with no operator action. A list names the
    # replicas of one floating server (one database, one identity key): any of them renews the lease.
    floating_server_url: str | list[str] | None = None
    # A license to activate online at start, with no operator (a fleet's image, a Kubernetes
    # Secret mounted as a file); MQTT_LICENSING_LICENSE_KEY(_FILE) in the environment win.
    license_key: str | None = None
    license_key_file: str | None = None
    usage_license_file: str | None = None
    floating_features: list[str] = field(default_factory=list)
    # How often deadlines are re-evaluated, and the HTTP timeout to the servers.
    tick_interval: float = 1.0
    http_timeout: float = 10.0
    max_payload: int = DEFAULT_MAX_PAYLOAD
    # Broker adapter limits: a socket must complete CONNECT within connect_timeout
    # seconds, and a packet larger than max_packet_size bytes closes its connection unread.
    connect_timeout: float = 10.0
    max_packet_size: int = 1024 * 1024
    # Alarms (docs/monitoring.md): days before expires_at / support_until at which
    # license_expiring / support_expiring is raised, and the share of the licensed connections at
    # which connection_quota_high is raised and cleared again.
    alarm_expiry_days: list[int] = field(default_factory=lambda: [30, 7, 1])
    alarm_support_days: list[int] = field(default_factory=lambda: [30])
    alarm_quota_high: float = 0.80
    alarm_quota_clear: float = 0.75
    # Metering: usage of metered client classes is closed into a signed record every
    # usage_interval seconds (kill -9 loses at most that much) and reported online every
    # usage_report_interval seconds and after each check-in.
    usage_interval: float = 60.0
    usage_report_interval: float = 3600.0
    # Under a license with `metering: required`: metered clients are refused once usage has waited
    # longer than this for the vendor (an alarm event at half of it); default 3 days.
    metering_grace: int = 3 * 86400
    # Access: a Mosquitto password file (`mosquitto_passwd` output, $7$ or $6$ entries)
    # naming more non-admin users, beside `users:`; and how many admin connections may be open at once.
    password_file: str | None = None
    max_admin_connections: int = 4
    # Readers (dashboards) open at once: never a licensed seat, only $license/... topics.
    max_reader_connections: int = 8
    # $license requests a non-admin connection gets answered in a burst; then one per 2 s.
    request_burst: int = 5
    # Reaching the servers: PEM CA certificates to trust for HTTPS instead of the system
    # roots; an HTTP(S) proxy URL for the vendor and floating servers; and whether to honour the
    # HTTPS_PROXY/HTTP_PROXY/NO_PROXY environment variables (off: only what is configured here).
    ca_file: str | None = None
    http_proxy: str | None = None
    http_proxy_from_env: bool = False
    # HOST:PORT of the HTTP listener serving the License page (mqtt_licensing/web); unset: no page.
    http_bind: str | None = None
    # Its /metrics answers `Authorization: Bearer <metrics_token>` (for Prometheus), or HTTP Basic
    # with an admin's or a reader's login; never anyone else.
    metrics_token: str | None = None
    # Where browsers reach MQTT over WebSocket, when not the broker's own `ws` listener on the
    # page's host (e.g. wss://plant.example/mqtt behind a proxy).
    ws_url: str | None = None
    # Browser origins (scheme://host[:port]) allowed on `ws` listeners besides the License page's own
    # and ws_url's host; "*" allows any. A browser sends the Origin of whatever page opened the socket.
    ws_origins: list[str] = field(default_factory=list)
    # Anonymous CONNECTs over WebSocket (any web page a user visits could make one): off by default.
    ws_allow_anonymous: bool = False
    # Persistent (clean_session=0) sessions while their client is away: expired after this many
    # seconds (0: never), their queue capped (oldest dropped), and at most so many kept per
    # username and per source address (the oldest offline ones go first).
    session_expiry: int = 3600
    session_queue_messages: int = 1000
    session_queue_bytes: int = 8 * 2**20
    offline_sessions_per_username: int = 1000
    offline_sessions_per_source: int = 1000
    # The store's upgrade page: the License page's Upgrade button opens it with ?license=<license id>.
    store_url: str | None = None
    # The second record of the trial, outside state_dir, so deleting the folder does
    # not restart the trial (default: $MQTT_LICENSING_TRIAL_MARKER, else a per-host file).
    trial_marker: str | None = None
    # The floating pool's join token (`mqtt-licensing floating allow --new-token`), needed
    # for a first lease from a pool that admits new instances only by token, fingerprint or network.
    floating_join_token: str | None = None
    # This broker's name as the vendor, the floating server, the portal and the License page show
    # it ("line-7-broker"); default: the host name. At most 64 printable characters: anything else
    # is cleaned (a warning), never a reason not to activate.
    instance_label: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise LicensingError(ErrorCode.INVALID_FIELD, f"unknown agent config keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def validate(self) -> None:
        self.settings()

    def settings(self) -> AgentSettings:
        """Check everything and parse it once; a config error raises one-line INVALID_FIELD."""
        for role, table in (("admins", self.admins), ("users", self.users)):
            for name, value in table.items():
                if not is_password_hash(value):
                    raise LicensingError(
                        ErrorCode.INVALID_FIELD,
                        f"{role}.{name}: store a hash from `mqtt-licensing hash-password`, not a plain password",
                    )
        users = self.user_hashes()
        for name in self.readers:
            if name not in self.admins and name not in users:
                # Anyone could connect under that name without a password and read status and events.
                message = f"readers: {name!r} has no password: add it to users: (or password_file:)"
                if self.allow_anonymous:
                    raise LicensingError(ErrorCode.INVALID_FIELD, message)
                log.warning("%s; it cannot connect at all while allow_anonymous is false", message)
        if min(self.max_admin_connections, self.max_reader_connections, self.request_burst) < 1:
            raise LicensingError(
                ErrorCode.INVALID_FIELD,
                "max_admin_connections, max_reader_connections and request_burst must be at least 1",
            )
        for name, spec in self.client_classes.items():
            unknown = set(spec) - {"features", "usernames", "client_id_prefixes"}
            if unknown:
                raise LicensingError(ErrorCode.INVALID_FIELD, f"client_classes.{name}: unknown keys {sorted(unknown)}")
            validate_features(spec.get("features") or [name])  # a class without a list names its feature
            if spec.get("client_id_prefixes") and not spec.get("usernames"):
                log.warning(
                    "client_classes.%s is matched by client-id prefix only: a client picks its own id, so it can "
                    "avoid the class; bind the class to usernames to enforce it",
                    name,
                )
        if self.floating_server_url:
            validate_features(self.floating_features or [MQTT_SERVER])
        self._validate_network()
        intervals = (self.check_in_interval, self.retry_interval, self.tick_interval, self.usage_interval)
        if min(*intervals, self.usage_report_interval) <= 0:
            raise LicensingError(ErrorCode.INVALID_FIELD, "intervals must be positive")
        return AgentSettings(
            vendor_key=self.pinned_vendor_key(),
            limits=self.limits(),  # raises on a trial that is longer or larger than allowed
            http=self.http_options(),
            alarms=self.alarm_settings(),
            user_hashes=MappingProxyType(users),
            floating_servers=tuple(self.floating_servers()),
            license_key=self._configured_key(),
            usage_license=usage_license_file(self.usage_license_file),
            instance_label=self.label(),
        )

    def label(self) -> str | None:
        """The label the agent signs into its requests: the config's, else the host name, cleaned."""
        text = self.instance_label if self.instance_label is not None else socket.gethostname()
        cleaned = instance_label.clean(text)
        if self.instance_label is not None and cleaned != self.instance_label:
            log.warning(
                "instance_label %s is not 1..%d printable characters: sent as %r",
                instance_label.terminal_text(self.instance_label[:80]),
                instance_label.MAX_LENGTH,
                cleaned,
            )
        return cleaned

    def _configured_key(self) -> ConfiguredKey | None:
        key = configured_key(self.license_key, self.license_key_file)
        if key is not None and not self.vendor_url:
            raise LicensingError(
                ErrorCode.INVALID_FIELD, "a license key in the config or environment needs vendor_url to activate"
            )
        return key

    def alarm_settings(self) -> AlarmSettings:
        days = [*self.alarm_expiry_days, *self.alarm_support_days]
        if any(not isinstance(d, int) or d <= 0 for d in days):
            raise LicensingError(
                ErrorCode.INVALID_FIELD, "alarm_expiry_days and alarm_support_days: positive whole days"
            )
        if not 0 < self.alarm_quota_clear <= self.alarm_quota_high <= 1:
            raise LicensingError(
                ErrorCode.INVALID_FIELD, "alarm_quota_clear must be above 0 and at most alarm_quota_high, at most 1"
            )
        return AlarmSettings(
            tuple(self.alarm_expiry_days), tuple(self.alarm_support_days), self.alarm_quota_high, self.alarm_quota_clear
        )

    def user_hashes(self) -> dict[str, str]:
        """``users:`` plus the entries of ``password_file``, read from disk: :meth:`settings` keeps the result."""
        hashes = dict(self.users)
        if not self.password_file:
            return hashes
        path = Path(self.password_file).expanduser()
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise LicensingError(
                ErrorCode.INVALID_FIELD, f"password_file: cannot read {path}: {exc.strerror}"
            ) from None
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, _sep, encoded = line.partition(":")
            if not is_password_hash(encoded):
                raise LicensingError(
                    ErrorCode.INVALID_FIELD,
                    f"password_file {path} line {number}: not a hashed entry; create it with mosquitto_passwd",
                )
            if name in hashes or name in self.admins:
                raise LicensingError(
                    ErrorCode.INVALID_FIELD, f"password_file {path} line {number}: {name!r} is also in the config"
                )
            hashes[name] = encoded
        return hashes

    def _validate_network(self) -> None:
        for url in [*self.floating_servers(), *([self.vendor_url] if self.vendor_url else [])]:
            if not url.startswith(("http://", "https://")):
                raise LicensingError(ErrorCode.INVALID_FIELD, f"{url!r} is not an http:// or https:// URL")
        if self.http_proxy and not self.http_proxy.startswith(("http://", "https://")):
            raise LicensingError(ErrorCode.INVALID_FIELD, f"http_proxy {self.http_proxy!r}: give http://host:port")
        if self.ca_file:
            self.http_options().ssl_context()  # a missing or unreadable CA file: one line naming it

    def floating_servers(self) -> list[str]:
        """The configured floating server URLs (one, or the replicas of one server), in order."""
        urls = self.floating_server_url
        if not urls:
            return []
        return [urls] if isinstance(urls, str) else [str(u) for u in urls]

    def http_options(self) -> HttpOptions:
        return HttpOptions(
            timeout=self.http_timeout,
            ca_file=str(Path(self.ca_file).expanduser()) if self.ca_file else None,
            proxy=self.http_proxy or None,
            proxy_from_env=self.http_proxy_from_env,
        )

    def limits(self) -> Limits:
        try:
            return Limits(self.trial_seconds, self.trial_max_connections, self.clock_tolerance)
        except ValueError as exc:
            raise LicensingError(ErrorCode.INVALID_FIELD, str(exc)) from None

    def pinned_vendor_key(self) -> Ed25519PublicKey:
        text = self.vendor_public_key.strip()
        if not text:
            raise LicensingError(
                ErrorCode.INVALID_FIELD, "vendor_public_key is required: every certificate is verified against it"
            )
        path = Path(text).expanduser()
        if "\n" not in text and len(text) < 4096 and path.is_file():
            text = path.read_text()
        try:
            return public_key_from_text(text)
        except LicensingError as exc:
            raise LicensingError(
                exc.code,
                f"vendor_public_key: {exc.message} (give the path of the vendor's vendor.pub, or the key text in it)",
            ) from None

    def class_features(self) -> dict[str, frozenset[str]]:
        """What each client class needs: its ``features`` list, or else the catalogue feature of
        its own name (a class ``sparkplug_b`` needs the feature ``sparkplug_b``)."""
        return {name: frozenset(spec.get("features") or [name]) for name, spec in self.client_classes.items()}

    def required_features(self, username: str | None, client_id: str) -> frozenset[str]:
        """Every non-admin client needs mqtt_server (and any feature the license says gates every
        client: the gate adds those); each client class it belongs to adds its features."""
        if not self.client_classes:  # the usual broker: one answer for every CONNECT, no new set
            return _SERVER_ONLY
        needed = {MQTT_SERVER}
        for name, spec in self.client_classes.items():
            if (username is not None and username in spec.get("usernames", ())) or client_id.startswith(
                tuple(spec.get("client_id_prefixes", ()))
            ):
                needed.update(spec.get("features") or [name])
        return frozenset(needed)
