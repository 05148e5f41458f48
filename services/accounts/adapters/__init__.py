"""Adapters of the accounts service: SQL tables, mapping, repositories, unit of work."""
