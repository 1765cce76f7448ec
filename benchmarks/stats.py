"""Rounds, medians, ratios and the result table.

Every figure is compared with a baseline measured in the same run. Subject and
baseline alternate round by round (the order rotates each round, so neither side
always runs first), and each side's figure is the median of its rounds; the ratio
is the median of the per-round ratios, which cancels slow drift of the machine
(other work on a shared 2-core box) better than a ratio of medians would.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One round of one side: the figure compared, and the CPU time the process under
    test spent per operation (µs). On a shared machine wall-clock rates move with
    everyone else's load; CPU per operation barely does, so it is shown beside each
    rate as a cross-check of the ratio."""

    value: float
    cpu_us: float = math.nan


Measure = Callable[[], Awaitable[Sample]]


async def interleaved(rounds: int, measures: dict[str, Measure], *, warmup: bool = True) -> dict[str, list[Sample]]:
    """Run each measure ``rounds`` times, interleaved (A,B / B,A / ...); one uncounted warm-up each first."""
    names = list(measures)
    if warmup:
        for name in names:
            await measures[name]()
    results: dict[str, list[Sample]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await measures[name]())
    return results


def ratios(subject: list[float], baseline: list[float]) -> list[float]:
    return [s / b if b else float("nan") for s, b in zip(subject, baseline, strict=True)]


@dataclass
class Row:
    """One line of the table: ``subject`` against ``baseline``, both in ``unit``."""

    benchmark: str
    subject: str
    value: float
    baseline_name: str
    baseline: float
    unit: str
    ratio: float
    target: str = ""  # ">= 0.95": the ratio; ">= 2000 req/s": the value itself; empty: context only
    cpu_us: float = math.nan  # CPU per operation of the process under test, subject and baseline
    cpu_baseline_us: float = math.nan

    @classmethod
    def from_rounds(
        cls,
        benchmark: str,
        subject: str,
        samples: list[Sample],
        baseline_name: str,
        baseline: list[Sample],
        unit: str,
        target: str = "",
    ) -> Row:
        """The ratio is always subject / baseline (for a latency, a target like "<= 1.5")."""
        values, base = [s.value for s in samples], [s.value for s in baseline]
        return cls(
            benchmark,
            subject,
            statistics.median(values),
            baseline_name,
            statistics.median(base),
            unit,
            statistics.median(ratios(values, base)),
            target,
            statistics.median(s.cpu_us for s in samples),
            statistics.median(s.cpu_us for s in baseline),
        )

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        op, _, rest = self.target.partition(" ")
        limit, _, unit = rest.partition(" ")
        bound = float(limit.rstrip("x"))
        measured = self.value if unit else self.ratio  # a target with a unit is an absolute figure
        return measured >= bound if op == ">=" else measured <= bound

    @property
    def verdict(self) -> str:
        return {None: "", True: "met", False: "MISSED"}[self.met]


def fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


HEADERS = (
    "benchmark",
    "subject",
    "value",
    "baseline",
    "baseline value",
    "unit",
    "ratio",
    "target",
    "",
    "CPU us/op",
    "base CPU us/op",
)
NUMERIC = (2, 4, 6, 9, 10)


def cells(row: Row) -> tuple[str, ...]:
    return (
        row.benchmark,
        row.subject,
        fmt(row.value),
        row.baseline_name,
        fmt(row.baseline),
        row.unit,
        f"{row.ratio:.2f}",
        row.target,
        row.verdict,
        fmt(row.cpu_us),
        fmt(row.cpu_baseline_us),
    )


def text_table(rows: list[Row]) -> str:
    lines = [HEADERS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                c.rjust(w) if i in NUMERIC and n else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    names = [*HEADERS[:8], "result", "CPU µs/op", "baseline CPU µs/op"]
    out = [
        "| " + " | ".join(names) + " |",
        "|" + "|".join("--:" if i in NUMERIC else "---" for i in range(len(names))) + "|",
    ]
    out += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(out)
