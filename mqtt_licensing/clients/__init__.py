"""HTTP clients for the activation and floating servers (httpx), and the MQTT operator client."""
