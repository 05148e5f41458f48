"""The charging model: pure rules, no gRPC, SQL or Redis."""
