"""Generated gRPC stubs of Reckon's contracts (``reckon.<service>.v1``).

Only this file is kept in git: ``make protos`` (tools/gen_protos.py) generates
every subpackage from ``protos/``. Never edit generated files by hand.
"""
