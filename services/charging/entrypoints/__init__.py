"""gRPC entrypoints of charging."""
