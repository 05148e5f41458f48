"""Charging: real-time balances, reservations in Redis Lua, credit-control sessions (issue 4)."""
