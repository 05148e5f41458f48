-- restore.lua: rebuild an account that Redis lost, from a snapshot of the SQL ledger (CHG-9).
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- KEYS[2] bucket metadata       ch:{acct:<id>}:bm
-- KEYS[3] bucket amounts        ch:{acct:<id>}:bv
-- KEYS[4] reservation expiry    ch:{acct:<id>}:x
-- KEYS[5] rebuild marker        ch:{acct:<id>}:rb
-- ARGV[1] JSON: {fresh (1: the account was created in SQL by this very request), fence (ms),
--   snap (Redis TIME in ms taken before the SQL snapshot was read), pfx, acct: {mode, cur, st,
--   stv, lim, low, t80, fua, fur, fuf, pver, ep (a new epoch)}, buckets: [{id, meta, a}],
--   now (ms, the injected clock), holds: [{sid, rn, sw, h}] (what open sessions held after
--   their last answered request, from SQL: see the answer's h and sw in credit_control.lua)}
-- Returns {status, wait ms, visit ms ('0': none)}; status OK | EXISTS (already there: nothing
-- written) | WAIT; visit is when the sweeper must come for the reservations held again.
--
-- The fence: a request whose script ran on the lost Redis may still be committing its
-- journal entries to SQL. Writers refuse entries older than a bound (see LedgerWriter), so
-- once `fence` ms have passed since the loss was first noticed (the marker, Redis clock),
-- every such commit has finished or failed, and a snapshot read after that includes
-- everything that will ever be committed from the old incarnation. Balances are then
-- credits minus debits per bucket, and every reservation a client was granted and still
-- holds is held again, from the same buckets, until the same sweep time: otherwise the
-- rebuild would hand that money to other sessions and the granted usage, reported later,
-- would take a prepaid account below zero. A reservation already past its sweep time is
-- returned as the sweeper would have (the session is closed as by Tcc). A new epoch keeps
-- journal entry ids unique.

local req = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return { 'EXISTS', '0', '0' }
end
if req.fresh ~= 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local marked = tonumber(redis.call('GET', KEYS[5]) or '')
  if not marked then
    redis.call('SET', KEYS[5], string.format('%d', now))
    return { 'WAIT', string.format('%d', req.fence), '0' }
  end
  if req.snap < marked + req.fence then
    return { 'WAIT', string.format('%d', math.max(0, marked + req.fence - now)), '0' }
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
  redis.call('HSET', KEYS[2], b.id, J(b.meta))
  redis.call('HSET', KEYS[3], b.id .. ':a', b.a, b.id .. ':r', '0')
end

-- Reservations held again. A session key restore_sessions.lua did not write from this very
-- answer (a newer request survived the loss, or a partial loss removed it above) is left
-- alone: its holds are not the ones SQL knows.
local visit = nil
if req.holds and #req.holds > 0 then
  local owner = { mode = a.mode, cur = a.cur, lim = tonumber(a.lim) or 0 }
  local buckets, by_id = load_buckets(KEYS[2], KEYS[3])
  for _, s in ipairs(req.holds) do
    local skey = req.pfx .. 's:' .. s.sid
    local known = redis.call('HMGET', skey, 'rn', 'st')
    if tonumber(known[1] or '') == s.rn and known[2] == 'O' then
      local sweep_at = tonumber(s.sw)
      local live = sweep_at > req.now
      local out, any = {}, false
      for g, res in pairs(s.h) do
        local al = {}
        if live then
          for _, pair in ipairs(res.al or {}) do
            local b = by_id[pair[1]]
            local t = b and math.min(tonumber(pair[2]), headroom(owner, b)) or 0
            if t > 0 then
              b.a = b.a - t
              b.r = b.r + t
              b.dirty = true
              al[#al + 1] = { b.id, t }
              any = true
            end
          end
        end
        out[#out + 1] = 'g:' .. g
        out[#out + 1] = J({ k = res.k, al = al, cur = res.cur })
      end
      if not live then
        out[#out + 1] = 'st'
        out[#out + 1] = 'X'
      end
      if #out > 0 then
        redis.call('HSET', skey, unpack(out))
      end
      if any then
        redis.call('ZADD', KEYS[4], I(sweep_at), s.sid)
        redis.call('PERSIST', skey)
        if not visit or sweep_at < visit then
          visit = sweep_at
        end
      end
    end
  end
  save_buckets(KEYS[3], buckets)
end
if visit then
  fields[#fields + 1] = 'due'
  fields[#fields + 1] = I(visit)
end

-- The account hash last: its existence is what every other script checks.
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('DEL', KEYS[5])
return { 'OK', '0', I(visit or 0) }
