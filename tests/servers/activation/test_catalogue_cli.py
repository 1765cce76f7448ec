"""`vendor feature` and `vendor template`, in process: a product line defined without a release."""

import json
from pathlib import Path

import pytest

from mqtt_licensing.cli.main import main


@pytest.fixture
def data(tmp_path: Path) -> str:
    folder = tmp_path / "vendor"
    assert main(["vendor", "init", str(folder)]) == 0
    return str(folder)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_vendor_defines_features_and_an_edition(capsys, data):
    assert (
        run(
            capsys,
            "vendor",
            "feature",
            "add",
            "sparkplug_b",
            "--data",
            data,
            "--title",
            "Sparkplug B",
            "--kind",
            "perpetual",
            "--gates-clients",
            "--requires",
            "mqtt_server",
        )[0]
        == 0
    )
    assert (
        run(
            capsys,
            "vendor",
            "feature",
            "add",
            "iot_bridge_kafka",
            "--data",
            data,
            "--title",
            "IoT Bridge for Kafka",
            "--kind",
            "metered",
            "--unit",
            "messages",
            "--gates-clients",
        )[0]
        == 0
    )
    code, out, _ = run(
        capsys,
        "vendor",
        "template",
        "add",
        "enterprise",
        "--data",
        data,
        "--features",
        "mqtt_server,sparkplug_b,iot_bridge_kafka",
        "--max-connections",
        "500",
    )
    assert code == 0
    code, out, _ = run(capsys, "vendor", "feature", "list", "--data", data, "--json")
    listed = {f["name"]: f for f in json.loads(out)}
    assert listed["sparkplug_b"]["gates"] == "class" and listed["sparkplug_b"]["requires"] == ["mqtt_server"]
    assert listed["iot_bridge_kafka"]["unit"] == "messages"
    code, out, _ = run(capsys, "vendor", "template", "list", "--data", data, "--json")
    assert json.loads(out) == [
        {"name": "enterprise", "features": ["mqtt_server", "sparkplug_b", "iot_bridge_kafka"], "max_connections": 500}
    ]


def test_retiring_keeps_the_definition_and_marks_it(capsys, data):
    assert run(capsys, "vendor", "feature", "retire", "iot_bridge_snowflake", "--data", data)[0] == 0
    code, out, _ = run(capsys, "vendor", "feature", "list", "--data", data)
    line = next(row for row in out.splitlines() if row.startswith("iot_bridge_snowflake"))
    assert "RETIRED" in line


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["feature", "add", "x_meter", "--title", "X", "--kind", "metered"], "needs a unit"),
        (["feature", "add", "mqtt_server", "--title", "X", "--kind", "perpetual"], "exists"),
        (["feature", "add", "y", "--title", "Y", "--kind", "term", "--requires", "nope"], "unknown 'nope'"),
        (["feature", "update", "nope", "--title", "N"], "no feature 'nope'"),
        (["template", "add", "support_only", "--features", "mqtt_server_support"], "requires mqtt_server"),
        (["template", "add", "odd", "--features", "gold"], "unknown feature 'gold'"),
    ],
)
def test_mistakes_are_one_line_naming_the_fix(capsys, data, argv, words):
    code, _, err = run(capsys, "vendor", *argv[:2], *argv[2:3], "--data", data, *argv[3:])
    assert code != 0
    assert words in err and len(err.strip().splitlines()) == 1
