-- restore.lua: rebuild an account that Redis lost, from a snapshot of the SQL ledger (CHG-9).
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- KEYS[2] bucket metadata       ch:{acct:<id>}:bm
-- KEYS[3] bucket amounts        ch:{acct:<id>}:bv
-- KEYS[4] reservation expiry    ch:{acct:<id>}:x
-- KEYS[5] rebuild marker        ch:{acct:<id>}:rb
-- ARGV[1] JSON: {fresh (1: the account was created in SQL by this very request), fence (ms),
--   snap (Redis TIME in ms taken before the SQL snapshot was read), pfx, acct: {mode, cur, st,
--   stv, lim, low, t80, fua, fur, fuf, pver, ep (a new epoch)}, buckets: [{id, meta, a}]}
-- Returns {status, wait ms}; status OK | EXISTS (already there: nothing written) | WAIT.
--
-- The fence: a request whose script ran on the lost Redis may still be committing its
-- journal entries to SQL. Writers refuse entries older than a bound (see LedgerWriter), so
-- once `fence` ms have passed since the loss was first noticed (the marker, Redis clock),
-- every such commit has finished or failed, and a snapshot read after that includes
-- everything that will ever be committed from the old incarnation. Balances are then
-- credits minus debits per bucket with nothing reserved: open reservations are gone and
-- their sessions reserve again. A new epoch keeps journal entry ids unique.

local req = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return { 'EXISTS', '0' }
end
if req.fresh ~= 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local marked = tonumber(redis.call('GET', KEYS[5]) or '')
  if not marked then
    redis.call('SET', KEYS[5], string.format('%d', now))
    return { 'WAIT', string.format('%d', req.fence) }
  end
  if req.snap < marked + req.fence then
    return { 'WAIT', string.format('%d', math.max(0, marked + req.fence - now)) }
  end
end

-- Leftovers of a partial loss would double count: reservations held in surviving session
-- keys refer to amounts the snapshot no longer holds back.
for _, sid in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  redis.call('DEL', req.pfx .. 's:' .. sid)
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])

local a = req.acct
local fields = { 'mode', a.mode, 'cur', a.cur, 'st', a.st, 'stv', a.stv, 'lim', a.lim, 't80', a.t80,
  'fua', a.fua, 'fur', a.fur, 'fuf', a.fuf, 'pver', a.pver, 'ep', a.ep, 'seq', '0' }
if a.low ~= '' then
  fields[#fields + 1] = 'low'
  fields[#fields + 1] = a.low
end
for _, b in ipairs(req.buckets) do
  redis.call('HSET', KEYS[2], b.id, cjson.encode(b.meta))
  redis.call('HSET', KEYS[3], b.id .. ':a', b.a, b.id .. ':r', '0')
end
-- The account hash last: its existence is what every other script checks.
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('DEL', KEYS[5])
return { 'OK', '0' }
