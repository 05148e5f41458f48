"""Pure model and rules of the accounts service: no gRPC, SQLAlchemy or Redis here."""
