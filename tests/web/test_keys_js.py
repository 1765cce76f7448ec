"""The page's key check (static/keys.js) gives the same verdict as the core's
normalize_key, run in the real browser over keys that are right, nearly right and wrong."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keys import format_key, normalize_key

pytestmark = pytest.mark.timeout(90)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def python_verdict(text: str) -> dict[str, Any]:
    try:
        return {"ok": True, "key": normalize_key(text)}
    except LicensingError as exc:
        return {"ok": False, "message": exc.message}


def candidates() -> list[str]:
    keys = [format_key(secrets.token_bytes(15)) for _ in range(8)] + [format_key(bytes(15)), format_key(b"\xff" * 15)]
    out: list[str] = []
    for key in keys:
        out += [key, key.lower(), key.replace("-", ""), " ".join(key.split("-")), f"  {key}\n", f"\t{key}\r\n"]
        body = key[5:]
        # one character wrong, at every position after the prefix
        for i, ch in enumerate(body):
            if ch == "-":
                continue
            wrong = ALPHABET[(ALPHABET.index(ch) + 1) % 32]
            out.append(key[:5] + body[:i] + wrong + body[i + 1 :])
        out += [key[:-1], key + "A", key[:-6], key + "-AAAAA"]  # wrong length
        out += [key.replace("MQL1", "MQL2"), key[5:], "X" + key]  # wrong prefix
        out += [key[:7] + "U" + key[8:], key[:7] + "*" + key[8:], key[:7] + "é" + key[8:]]  # bad characters
        # Crockford's look-alikes read as 0/1, in the body and in the checksum
        out += [key.replace("0", "O").replace("1", "I"), key.replace("1", "L")]
        out += [
            key.replace("-", "\u00a0"),
            key.replace("-", "\u2003"),
            key.replace("-", "\x1c"),
            key.replace("-", "\ufeff"),
        ]
    out += ["", "   ", "MQL1", "MQL1-", "mql1-", "-----", "MQL1-" + "0" * 30, "MQL1-" + "Z" * 30]
    return out


def test_javascript_and_python_agree(page, site):
    page.goto(site.url)
    page.wait_for_selector("body[data-ready=true]")
    texts = candidates()
    js = page.evaluate(
        "async (texts) => { const m = await import('/keys.js'); return texts.map((t) => m.checkKey(t)); }", texts
    )
    assert len(js) == len(texts)
    disagreements = [(t, p, j) for t, p, j in zip(texts, map(python_verdict, texts), js, strict=True) if p != j]
    assert disagreements == []
    verdicts = [v["ok"] for v in js]
    assert verdicts.count(True) >= 60 and verdicts.count(False) >= 300  # both sides of the rule were exercised


def test_sha256_matches_hashlib(page, site):
    import hashlib

    page.goto(site.url)
    page.wait_for_selector("body[data-ready=true]")
    samples = [b"", b"abc", b"a" * 55, b"a" * 56, b"a" * 64, bytes(range(256)) * 3]
    got = page.evaluate(
        """async (samples) => {
            const m = await import('/keys.js');
            const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
            return samples.map((s) => hex(m.sha256(new Uint8Array(s))));
        }""",
        [list(s) for s in samples],
    )
    assert got == [hashlib.sha256(s).hexdigest() for s in samples]
