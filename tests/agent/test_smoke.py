
from tests.helpers.broker import MqttClient, start_broker
from tests.helpers.vendor import start_vendor


def test_activate_online_end_to_end(tmp_path):
    with start_vendor(tmp_path / "vendor") as vendor:
        key = vendor.issue(features=["mqtt_server", "mqtt_server_support"], support_until=1893456000)
        with start_broker(tmp_path / "state", vendor=vendor) as broker:
            with broker.admin() as c:
                status = c.request("status")["status"]
                assert status["state"] == "trial"
                reply = c.request("activate", {"license_key": key})
            assert reply["status"]["state"] == "active"
            assert reply["status"]["features"] == ["mqtt_server", "mqtt_server_support"]
            assert key not in str(reply)
            with MqttClient(broker.port, client_id="plain") as plain:
                assert plain.connect() == 0
