-- settle.lua: after sweeping an account, set its next visit, unless it was touched since
-- the claim (then the claim's lease stands and the account is simply visited again).
--
-- KEYS[1] due index     ch:{sweep:<shard>}:due
-- KEYS[2] versions      ch:{sweep:<shard>}:ver
-- ARGV[1] account id    ARGV[2] the version seen at claim    ARGV[3] next visit ms (-1: none)
-- Returns 1 when settled, 0 when a concurrent touch won.

local current = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
if current ~= ARGV[2] then
  return 0
end
if tonumber(ARGV[3]) < 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
