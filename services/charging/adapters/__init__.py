"""Adapters of charging: the Redis balance store and its Lua, the SQL ledger, pricing."""
