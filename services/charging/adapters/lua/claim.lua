-- claim.lua: lease the accounts of one index shard that are due for a sweep.
--
-- KEYS[1] due index     ch:{sweep:<shard>}:due
-- KEYS[2] versions      ch:{sweep:<shard>}:ver
-- ARGV[1] now (ms)      ARGV[2] lease (ms)      ARGV[3] most accounts to claim
-- Returns {account id, version, ...}. Claimed accounts are pushed to now + lease, so two
-- sweepers (worker processes, replicas) rarely visit the same account at once; when they
-- do, the sweep is still correct (it only returns what has expired).

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
if #due == 0 then
  return out
end
local lease = string.format('%d', tonumber(ARGV[1]) + tonumber(ARGV[2]))
for _, account in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', lease, account)
  out[#out + 1] = account
  out[#out + 1] = redis.call('HGET', KEYS[2], account) or '0'
end
return out
