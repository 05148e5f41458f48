"""Use cases of charging: handlers, ports, unit of work, supervision."""
