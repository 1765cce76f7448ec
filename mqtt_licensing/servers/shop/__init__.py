"""The store on the activation server: purchase, upgrade and support renewal through
Stripe, keys by e-mail, and the customer self-service portal.

Modules: app (the :class:`~.app.Shop`: pages + fulfilment loop), catalogue (what is sold),
config, store (tables, part of the activation schema: migration 0006), payments (Stripe),
orders (pending -> paid -> fulfilled), mail (SMTP), messages (what the e-mails say), portal,
web / portal_web (pages), devtools (localstripe and an SMTP sink for the demo and tests).

Kept free of imports so the activation store can declare the store's tables cheaply.
"""
