"""Use cases of the accounts service: commands, handlers and the unit-of-work contract."""
