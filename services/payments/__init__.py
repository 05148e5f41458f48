"""The payments service: methods on file, payments on every channel, automatic collection,
refunds and chargebacks, retries, the janitor of unknown outcomes, bank statements.

Layered like the other services: ``domain`` (pure rules and the provider port),
``service_layer`` (use cases on a unit of work, ports to invoicing and charging),
``adapters`` (SQL, the sandbox and Stripe providers, gRPC clients), ``entrypoints``
(gRPC servicer, event consumer, workers, callbacks, ``main``) and ``bootstrap``.
"""
