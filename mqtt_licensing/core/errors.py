"""One exception type and one catalogue of stable error codes.

Every failure that reaches a user - over MQTT, HTTP or the CLI - carries one of
these codes. Codes are part of the public contract (topics.md lists them all);
never rename one, only add.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # -- request envelope (agent, over MQTT) ---------------------------------
    MALFORMED_PAYLOAD = "malformed_payload"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_OPERATION = "unknown_operation"
    UNSUPPORTED_METHOD = "unsupported_method"
    INVALID_REPLY_TO = "invalid_reply_to"
    NOT_AUTHORIZED = "not_authorized"
    # -- license keys and documents --------------------------------------------
    INVALID_KEY = "invalid_key"
    KEY_NOT_FOUND = "key_not_found"
    INVALID_CODE = "invalid_code"
    INVALID_SIGNATURE = "invalid_signature"
    WRONG_INSTANCE = "wrong_instance"
    WRONG_DOCUMENT = "wrong_document"
    # -- license lifecycle -------------------------------------------------------
    NO_ACTIVATIONS_LEFT = "no_activations_left"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"
    WRONG_MODEL = "wrong_model"
    NOT_ACTIVATED = "not_activated"
    ALREADY_ACTIVATED = "already_activated"
    ACTIVATION_NOT_FOUND = "activation_not_found"
    ALREADY_FREE = "already_free"
    OFFLINE_LICENSE_CANNOT_REACTIVATE = "offline_license_cannot_reactivate"
    NO_PENDING_REQUEST = "no_pending_request"
    REQUEST_SUPERSEDED = "request_superseded"
    CLONED = "cloned"  # two instances share one activation (a copied state folder)
    DEACTIVATED = "deactivated"  # this instance gave the activation up (a restored state.json)
    # The vendor released the activation: its instance was silent longer than the license's release_after.
    RELEASED = "released"
    # -- floating ----------------------------------------------------------------
    NO_SEATS = "no_seats"
    FEATURE_UNAVAILABLE = "feature_unavailable"
    # A certificate names a feature it carries no definition for: refused, never guessed at.
    FEATURE_UNDEFINED = "feature_undefined"
    LEASE_NOT_FOUND = "lease_not_found"
    NOT_PROVISIONED = "not_provisioned"
    # -- servers and transport -----------------------------------------------------
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    SERVER_UNREACHABLE = "server_unreachable"
    BAD_RESPONSE = "bad_response"
    STATE_CORRUPT = "state_corrupt"
    STATE_TOO_NEW = "state_too_new"  # written by a newer version: refused, left untouched
    NOT_A_DATA_FOLDER = "not_a_data_folder"  # a server verb pointed at a folder its init never made
    PORT_IN_USE = "port_in_use"
    INTERNAL_ERROR = "internal_error"
    TRIAL_MARKER_UNWRITABLE = "trial_marker_unwritable"  # the second trial record outside the state folder
    # -- the store ---------------------------------------------------------------------
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_PROVIDER_ERROR = "payment_provider_error"

    @property
    def means_already_free(self) -> bool:
        """The server no longer holds the activation: a deactivation has nothing left to do."""
        return self in (ErrorCode.ACTIVATION_NOT_FOUND, ErrorCode.ALREADY_FREE)

    @property
    def is_verdict(self) -> bool:
        """A refusal that stops a license, trusted only with a vendor-signed Verdict as evidence."""
        return self in (
            ErrorCode.REVOKED,
            ErrorCode.SUSPENDED,
            ErrorCode.EXPIRED,
            ErrorCode.ACTIVATION_NOT_FOUND,
            ErrorCode.CLONED,
            ErrorCode.RELEASED,
        )


class LicensingError(Exception):
    """A failure with a stable code and a message meant for a human."""

    def __init__(self, code: ErrorCode, message: str, *, evidence: bytes | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = ErrorCode(code)
        self.message = message
        # A signed document backing the error (a vendor Verdict): the only form in which
        # a refusal from a server may change what an agent believes.
        self.evidence = evidence

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}


class SetupError(LicensingError):
    """A mistake in how something is set up (a data folder, a port, a database URL), not a failed
    operation: the CLI prints its one line naming the fix and exits 2."""
