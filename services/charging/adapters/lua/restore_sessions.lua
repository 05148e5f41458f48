-- restore_sessions.lua: bring back, before an account is restored, the last answered request
-- of its recent sessions that had effects in the ledger, so a retry after a Redis loss is
-- answered from memory instead of being charged again (CHG-2 with CHG-9).
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- ARGV[1] JSON: {pfx, win (s), sessions: [{sid, st, rn, ans}]}
-- Returns 'OK', or 'EXISTS' (the account is already restored: its sessions are live, and
-- an older snapshot must not overwrite them). Each session is written only when Redis
-- knows no newer request of it.

local req = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'EXISTS'
end
for _, s in ipairs(req.sessions) do
  local key = req.pfx .. 's:' .. s.sid
  local known = tonumber(redis.call('HGET', key, 'rn') or '')
  if not known or known < s.rn then
    redis.call('HSET', key, 'st', s.st, 'rn', string.format('%d', s.rn), 'ans', s.ans, 'ent', '[]')
    -- The session's priced position (cumulative pricing) travels in its last answer.
    local ok, answer = pcall(cjson.decode, s.ans)
    if ok and type(answer) == 'table' and type(answer.cum) == 'table' then
      redis.call('HSET', key, 'cum', J(answer.cum))
    end
    -- So are the units used so far per rating group (tu), read by GetCreditControlSession.
    if ok and type(answer) == 'table' and type(answer.rgs) == 'table' then
      for _, rg in ipairs(answer.rgs) do
        if rg.tu then
          redis.call('HSET', key, 'u:' .. string.format('%d', rg.g), rg.tu)
        end
      end
    end
    redis.call('EXPIRE', key, string.format('%d', req.win))
  end
end
return 'OK'
