-- A token bucket shared by every gateway process (ADR 0072).
-- KEYS[1]: the bucket (a hash: t = tokens left, at = ms of the last take)
-- ARGV[1]: capacity (requests per minute); ARGV[2]: tokens refilled per second;
-- ARGV[3]: tokens wanted (a process leases a few at once when a key is busy)
-- Returns {granted, wait_ms}: granted = tokens taken (0 .. wanted; at least 1 when
-- one is there); wait_ms = when granted is 0, the milliseconds until one would be.
-- Redis's own clock (TIME), not the callers': processes on several hosts agree.
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(wanted, math.floor(tokens))
local wait = 0
if granted >= 1 then
  tokens = tokens - granted
else
  granted = 0
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now))
-- Gone once it would be full again: a full bucket and no bucket mean the same.
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return {granted, wait}
