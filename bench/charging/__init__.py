"""Charging benchmarks (issue 4): unary Update vs the echo baseline, the streaming RPC vs
the Lua script pipelined straight from redis-py, and the cost of one request with 10 and
with 100,000 live sessions. Run ``python -m bench.charging``; see ``__main__``.
"""
