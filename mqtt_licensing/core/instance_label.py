"""An instance's label: the name an operator gives a broker ("line-7-broker") so that people who
free, renew or watch it need not read a fingerprint.

The label is untrusted text. It travels inside every signed request an instance sends
(``InstanceRequest.label``), so nobody on the path can rename an instance, but the instance
itself may say anything: the servers refuse a label that is not 1..64 printable characters
(``invalid_field``, one line), and whatever shows a label escapes it for its medium (Jinja
autoescape, ``textContent``, :func:`terminal_text` for terminal tables). The agent cleans its
own (:func:`clean`) before it signs, so an odd host name never blocks an activation.
"""

from __future__ import annotations

from .errors import ErrorCode, LicensingError

MAX_LENGTH = 64
# How many earlier labels a server keeps per activation (or per leasing instance): enough to
# recognise a renamed broker, bounded so a broker renaming itself at every check-in costs nothing.
HISTORY = 20


def problem(label: str) -> str | None:
    """Why ``label`` is refused, or None. Printable is Python's ``str.isprintable``: no control
    characters (terminal escapes start with ESC), no format characters (bidirectional overrides
    that reorder what a reader sees), no line or paragraph separators."""
    if not label:
        return "must not be empty"
    if len(label) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters (got {len(label)})"
    if not label.isprintable():
        return "must be printable text (no control characters or terminal escapes)"
    if label != label.strip():
        return "must not start or end with spaces"
    return None


def check(label: str | None) -> str | None:
    """A label from the network: None (an instance that sends none), or refused with one line."""
    if label is None:
        return None
    why = problem(label)
    if why is not None:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"instance label {terminal_text(label[:80])}: {why}")
    return label


def clean(text: str) -> str | None:
    """What an agent sends for ``text`` (its host name, or a label from its config): each
    unprintable character becomes ``?``, surrounding spaces go, at most ``MAX_LENGTH``
    characters; None when nothing is left."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text.strip()).strip()[:MAX_LENGTH].strip()
    return cleaned or None


def terminal_text(text: str) -> str:
    """``text`` safe for a terminal: printable characters as they are, every other one as its
    Python escape (ESC shows as ``\\x1b``), so a label can neither recolour nor move the cursor."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


__all__ = ["HISTORY", "MAX_LENGTH", "check", "clean", "problem", "terminal_text"]
