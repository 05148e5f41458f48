"""The accounts service: customers, billing accounts and their lifecycle, subscriptions.

Layered as ARCHITECTURE.md describes: ``domain`` (pure rules), ``service_layer``
(use cases on a unit of work), ``adapters`` (SQL, migrations), ``entrypoints``
(gRPC servicer, event consumer, scheduler, ``main``) and ``bootstrap`` (the one
place where they are wired together).
"""
