"""Refused CONNECTs in the broker log: once per client and reason, a flood summarised."""

import logging

from mqtt_licensing.agent.refusals import RefusalLog


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_refusal_once_and_a_flood_in_one_summary(caplog):
    caplog.set_level(logging.WARNING, logger="test.refusals")
    clock = Clock()
    log = RefusalLog(logging.getLogger("test.refusals"), burst=3, window=60, clock=clock)
    for _ in range(5):
        log.refused("sensor-1", None, "not_licensed", "no license")  # a client retrying
    assert [r.getMessage() for r in caplog.records] == [
        "refused CONNECT client_id='sensor-1' username=None: not_licensed (no license)"
    ]
    for n in range(1000):
        log.refused(f"fleet-{n}", "u", "connection_limit", "limit reached")
    assert len(caplog.records) == 3  # the burst: two more clients, then silence
    log.flush()
    assert len(caplog.records) == 3  # the window is not over
    clock.now = 61
    log.flush()
    summary = caplog.records[-1].getMessage()
    assert summary.startswith("1002 more refused CONNECT(s)")
    assert "connection_limit=998" in summary and "not_licensed=4" in summary
    log.refused("sensor-1", None, "not_licensed", "no license")  # a new window: logged again
    assert caplog.records[-1].getMessage().startswith("refused CONNECT client_id='sensor-1'")
