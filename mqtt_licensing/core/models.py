"""The license models: how an instance holds its license (BRIEF §3)."""

from __future__ import annotations

from enum import StrEnum


class LicenseModel(StrEnum):
    ONLINE = "online"  # node-locked, checks in with the activation server
    OFFLINE = "offline"  # node-locked, usage license exchanged by codes, never checks in
    FLOATING = "floating"  # a seat leased from a floating license server
