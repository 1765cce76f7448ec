"""How the operator CLI shows status documents, events and codes to a person.

Pure text in, text out; never raises on odd input (a newer agent may send fields
this CLI does not know).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

_RULE = "=" * 68


def safe_text(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control or invisible formatting character shown as an escape (``\\x1b``).

    Usernames, client ids and messages come from whoever connects: printed raw, an ANSI/OSC escape
    could retitle the terminal, clear the screen or draw a fake "active" line.
    """
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or (newlines and c == "\n") else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = int(seconds // size)
            return f"{amount} {unit}{'s' if unit == 'day' and amount != 1 else ''}"
    return f"{int(seconds)} s"


def format_time(value: Any, now: datetime | None = None) -> str:
    """An ISO-8601 (or epoch) time as ``2025-01-02 03:04:05 UTC (in 3 days)``; anything else as given."""
    when = _parse_time(value)
    if when is None:
        return str(value)
    now = now or datetime.now(UTC)
    delta = (when - now).total_seconds()
    relative = "now" if abs(delta) < 1 else (f"in {_span(delta)}" if delta > 0 else f"{_span(delta)} ago")
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({relative})"


def _is_time_key(key: str) -> bool:
    return key.endswith(("_at", "_until", "_since")) or key in ("deadline", "expires", "since")


def _format_value(key: str, value: Any, now: datetime | None) -> str:
    if value is None:
        return "-"
    if _is_time_key(key):
        return format_time(value, now)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return _format_mapping(value, now)
    if isinstance(value, str) and "\n" in value.strip():
        return "present (a multi-line code: see --json)"
    return str(value)


def _format_mapping(mapping: dict[Any, Any], now: datetime | None) -> str:
    parts = [
        f"{str(k).replace('_', ' ')}: {_format_value(str(k), v, now)}" for k, v in mapping.items() if v is not None
    ]
    return "; ".join(parts) if parts else "-"


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def code_banner(title: str, code: str, instructions: list[str]) -> str:
    """A block that stands out in a terminal: title, what to do, then the code between rules."""
    lines = [_RULE, title, *instructions, "-" * len(_RULE), code.rstrip("\n"), _RULE]
    return "\n".join(lines)


def deactivation_banner(code: str) -> str:
    return code_banner(
        "OFFLINE DEACTIVATION CODE: send it to your vendor",
        code,
        [
            "This broker no longer serves under the offline license. Send the code below",
            "to your vendor (as text or as a file); they use it to free the activation",
            "so the license can be activated elsewhere. Until they do, the activation",
            "still counts against your license.",
        ],
    )


Rows = list[tuple[str, str]]


def _license_rows(doc: dict[str, Any], state: str, now: datetime | None) -> Rows:
    rows: Rows = []
    serving = doc.get("serving")
    rows.append(
        ("State", state + ("" if not isinstance(serving, bool) else " (serving)" if serving else " (NOT serving)"))
    )
    for label, key in (("Reason", "reason"), ("Model", "model"), ("License", "license_id"), ("Key", "key"),
                       ("Activation", "activation_id")):  # fmt: skip
        if (value := text_or_none(doc.get(key))) is not None:
            rows.append((label, value))
    features = doc.get("features")
    if isinstance(features, list | tuple):
        rows.append(("Features", ", ".join(str(f) for f in features) if features else "none"))
    elif "features" in doc:
        rows.append(("Features", _format_value("features", features, now)))
    return rows


def _deadline_rows(doc: dict[str, Any], state: str, now: datetime | None) -> Rows:
    rows: Rows = []
    licensed = text_or_none(doc.get("license_id")) is not None
    for label, key in (("Support until", "support_until"), ("Expires", "expires_at"), ("Valid until", "valid_until")):
        value = doc.get(key)
        if value is not None:
            rows.append((label, format_time(value, now)))
        elif key == "expires_at" and licensed and key in doc:
            rows.append((label, "never"))
    if doc.get("deadline") is not None:
        label = {"trial": "Trial ends", "grace": "Grace ends", "pending_offline": "Deadline"}.get(state, "Deadline")
        rows.append((label, format_time(doc.get("deadline"), now)))
    return rows


def _health_rows(doc: dict[str, Any], now: datetime | None) -> Rows:
    rows: Rows = []
    connections, limit = doc.get("connections"), doc.get("max_connections")
    if connections is not None or limit is not None:
        used = "?" if connections is None else str(connections)
        text = f"{used} of {limit}" if limit is not None else f"{used} (no license limit)"
        overage = doc.get("overage")
        if isinstance(overage, dict) and overage.get("allowed") is not None:
            over = ", over the cap" if doc.get("connections_over_cap") else ""
            text += f" (overage admits up to {overage['allowed']}{over})"
        rows.append(("Connections", text))
    instance = doc.get("instance")
    if isinstance(instance, dict):
        fingerprint, label = text_or_none(instance.get("fingerprint")), text_or_none(instance.get("label"))
        if fingerprint and label:  # the label is shown through safe_text like every row: escapes print as text
            rows.append(("Instance", f"{label} ({fingerprint})"))
        else:
            rows.append(("Instance", fingerprint or _format_mapping(instance, now)))
    for label, key in (("Trial", "trial"), ("Check-in", "check_in"), ("Floating", "floating")):
        value = doc.get(key)
        if isinstance(value, dict) and value:
            beat = value.get("heartbeat") if key == "check_in" else None
            value = {k: v for k, v in value.items() if k != "heartbeat"}
            rows.append((label, _format_mapping(value, now)))
            if isinstance(beat, dict):
                rows.append(("Heartbeat", _format_mapping(beat, now)))
    clock = doc.get("clock")
    if isinstance(clock, dict) and clock.get("tampered"):
        seen = format_time(clock.get("last_seen"), now)
        rows.append(("Clock", f"ran back: the system clock is behind the last time this instance saw ({seen})"))
    return rows


def _offline_rows(doc: dict[str, Any], now: datetime | None) -> tuple[Rows, str | None]:
    offline = doc.get("offline")
    if not isinstance(offline, dict):
        return [], None
    code = text_or_none(offline.get("deactivation_code"))
    rest = {k: v for k, v in offline.items() if k != "deactivation_code"}
    if code:
        rest["deactivation_code"] = "pending: see below"
    rows = [("Offline", _format_mapping(rest, now))] if any(v is not None for v in rest.values()) else []
    return rows, code


def _problem_rows(doc: dict[str, Any]) -> Rows:
    problems = doc.get("problems")
    if not isinstance(problems, list) or not problems:
        return []
    rendered = []
    for problem in problems:
        if isinstance(problem, dict):
            code, message = problem.get("code"), problem.get("message")
            rendered.append(f"[{code}] {message}" if code else str(message))
        else:
            rendered.append(str(problem))
    return [("Problems", rendered[0]), *(("", item) for item in rendered[1:])]


def _alarm_rows(doc: dict[str, Any], now: datetime | None) -> Rows:
    """One row per active alarm, most severe first (as the agent orders them)."""
    alarms = doc.get("alarms")
    if not isinstance(alarms, list) or not alarms:
        return []
    rendered = []
    for alarm in alarms:
        if not isinstance(alarm, dict):
            rendered.append(str(alarm))
            continue
        line = f"[{alarm.get('severity', '?')}] {alarm.get('code')}: {alarm.get('message')}"
        if alarm.get("since") is not None:
            line += f" (since {format_time(alarm.get('since'), now)})"
        rendered.append(line)
    return [("Alarms", rendered[0]), *(("", item) for item in rendered[1:])]


def _configured_rows(doc: dict[str, Any]) -> Rows:
    """What the config asks for that is not in place: an operator's hold, old activations to free."""
    configured = doc.get("configured")
    if not isinstance(configured, dict):
        return []
    rows: Rows = []
    if configured.get("held_back"):
        rows.append(("Configured", str(configured["held_back"])))
    frees = configured.get("frees_pending")
    if isinstance(frees, list) and frees:
        ids = ", ".join(str(f.get("activation_id")) for f in frees if isinstance(f, dict))
        rows.append(("Configured", f"the replaced key's activation {ids} is not freed at the vendor yet (retried)"))
    return rows


def _failure_rows(doc: dict[str, Any], now: datetime | None) -> Rows:
    failure = doc.get("last_failure")
    if not isinstance(failure, dict):
        return []
    when = format_time(failure.get("at"), now) if failure.get("at") is not None else "?"
    return [("Last failure", f"{failure.get('operation')} [{failure.get('code')}] {failure.get('message')} ({when})")]


def format_status(doc: Any, now: datetime | None = None) -> str:
    """A readable, fixed-order summary of a status document. Never raises on odd input."""
    if not isinstance(doc, dict):
        return safe_text(f"(no status document: {doc!r:.200})")
    state = text_or_none(doc.get("state")) or "unknown"
    offline_rows, deactivation_code = _offline_rows(doc, now)
    rows = [
        *_license_rows(doc, state, now),
        *_deadline_rows(doc, state, now),
        *_health_rows(doc, now),
        *offline_rows,
        *_alarm_rows(doc, now),
        *_problem_rows(doc),
        *_configured_rows(doc),
        *_failure_rows(doc, now),
    ]
    if doc.get("updated_at") is not None:
        rows.append(("Updated", format_time(doc.get("updated_at"), now)))
    width = max(len(label) for label, _ in rows) + 2
    text = "\n".join((f"{label}:" if label else "").ljust(width) + safe_text(value) for label, value in rows)
    if deactivation_code:
        text += "\n\n" + deactivation_banner(safe_text(deactivation_code, newlines=True))
    return text


def format_event(event: Any, now: datetime | None = None) -> str:
    """One line per ``$license/events`` message: time, kind, then whatever else it says."""
    if not isinstance(event, dict):
        return safe_text(str(event))
    rest = dict(event)
    when = next((rest.pop(k) for k in ("at", "time", "timestamp") if k in rest), None)
    kind = next((rest.pop(k) for k in ("event", "type", "kind") if k in rest), "event")
    head = f"{format_time(when, now)}  " if when is not None else ""
    return safe_text(f"{head}{kind}" + (f"  {_format_mapping(rest, now)}" if rest else ""))


# -- arguments ------------------------------------------------------------------------------
