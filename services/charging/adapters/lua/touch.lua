-- touch.lua: ask the sweeper to visit an account by a time (one shard of the global index).
--
-- KEYS[1] due index     ch:{sweep:<shard>}:due   (zset: account id -> visit-by ms)
-- KEYS[2] versions      ch:{sweep:<shard>}:ver   (hash: account id -> version; field '#seq'
--                                                   counts for the whole shard, so a version
--                                                   is never reused)
-- ARGV[1] account id    ARGV[2] visit-by ms
-- Returns the account's new version. The index is sharded by a hash of the account id,
-- each shard under its own hash tag, so the sweeper finds due accounts on Redis Cluster
-- without scanning. Account scripts cannot write here (another slot): the caller touches
-- after a script that asked for it. The version makes the sweeper's settle (settle.lua) a
-- compare-and-set, so a touch between its claim and its settle is never lost.

local version = redis.call('HINCRBY', KEYS[2], '#seq', 1)
redis.call('HSET', KEYS[2], ARGV[1], version)
redis.call('ZADD', KEYS[1], 'LT', ARGV[2], ARGV[1])
return version
