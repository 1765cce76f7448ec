"""The self-hosted floating license server: store (SQL) -> service (domain) -> app (HTTP).

``provision`` talks to the vendor's activation server to obtain the pool's
vendor-signed certificate online; the CLI verbs live in :mod:`mqtt_licensing.cli.floating`.
"""
