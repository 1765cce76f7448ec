"""The store on the activation server: purchase, upgrade and support renewal through
Stripe, keys by e-mail, and the customer self-service portal.

Its modules, one line each, are listed in docs/architecture.md (``shop/``); its tables have their
own migrations (``migrations/versions``) and version table.

Kept free of imports so the activation store can declare the store's tables cheaply.
"""
