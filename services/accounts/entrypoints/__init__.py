"""Ways into the accounts service: gRPC servicer, event consumer, scheduler and ``main``."""
