-- sweep.lua: the supervision of one account (CHG-4): return every reservation whose
-- validity time plus grace has passed and close its session as RFC 4006's Tcc timer
-- would; hand back the journal entries still waiting for SQL (a crashed request's);
-- tell when the account needs the next visit.
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- KEYS[2] bucket metadata       ch:{acct:<id>}:bm
-- KEYS[3] bucket amounts        ch:{acct:<id>}:bv
-- KEYS[4] reservation expiry    ch:{acct:<id>}:x
-- KEYS[5] journal               ch:{acct:<id>}:j
-- ARGV[1] JSON: {now (ms), win (s), jd (ms), limit (sessions per call), pfx (the account's
--   key prefix ch:{acct:<id>}: ; session keys are pfx .. 's:' .. session id, same slot)}
-- Returns {status, next visit ms ('-1': none), sessions closed, journal entry JSON...};
--   status OK | NOACCOUNT.
-- A swept session keeps, per rating group, which class (units or money) it was drawing
-- from, so a used-units report that arrives later is still debited from the right buckets.

local req = cjson.decode(ARGV[1])
local acct = load_account(KEYS[1])
if not acct then
  return { 'NOACCOUNT', '-1', '0' }
end
local now = req.now

local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', I(now), 'LIMIT', 0, req.limit)
if #expired > 0 then
  local buckets, by_id = load_buckets(KEYS[2], KEYS[3])
  for _, sid in ipairs(expired) do
    local skey = req.pfx .. 's:' .. sid
    local flat = redis.call('HGETALL', skey)
    local fields = { 'st', 'X' }
    for i = 1, #flat, 2 do
      if string.sub(flat[i], 1, 2) == 'g:' then
        local res = cjson.decode(flat[i + 1])
        consume(by_id, res.al, 0, 0, 'USAGE')
        res.al = {}
        fields[#fields + 1] = flat[i]
        fields[#fields + 1] = J(res)
      end
    end
    if #flat > 0 then
      redis.call('HSET', skey, unpack(fields))
      redis.call('EXPIRE', skey, I(req.win))
    end
    redis.call('ZREM', KEYS[4], sid)
  end
  save_buckets(KEYS[3], buckets)
end

local entries = redis.call('HVALS', KEYS[5])
local nxt = nil
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if #first > 0 then
  nxt = tonumber(first[2])
end
if #entries > 0 then
  local drain = now + req.jd
  if not nxt or drain < nxt then
    nxt = drain
  end
end
if nxt then
  redis.call('HSET', KEYS[1], 'due', I(nxt))
else
  redis.call('HDEL', KEYS[1], 'due')
end
local out = { 'OK', I(nxt or -1), I(#expired) }
for _, e in ipairs(entries) do
  out[#out + 1] = e
end
return out
