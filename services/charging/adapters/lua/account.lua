-- account.lua: change an account's charging policy or its state (CHG-6, CHG-10, CHG-11).
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- KEYS[2] bucket metadata       ch:{acct:<id>}:bm
-- KEYS[3] bucket amounts        ch:{acct:<id>}:bv
-- KEYS[4] idempotency record    ch:{acct:<id>}:q:policy:<request id>
-- KEYS[5] journal               ch:{acct:<id>}:j
-- ARGV[1] JSON request:
--   op     POLICY | STATE
--   acct, now, win (s), jd (ms) as in credit_control.lua
--   POLICY: pol = {mode, cur, lim, low ('' = none), t80, fua, fur, fuf} (amounts as decimal
--           strings, scaled in the currency), rid, fp (idempotency)
--   STATE:  st (active|suspended|barred|closed), stv (ms the change happened; older loses)
-- Returns {status, answer JSON, touch ms, journal entry JSON...}; status OK | REPLAY |
--   NOACCOUNT | STALE (a newer state is already there). POLICY journals a P record (and the
--   main bucket of the currency when it is new); STATE is written to SQL first by the
--   caller, so it journals nothing.

local req = cjson.decode(ARGV[1])
local acct = load_account(KEYS[1])
if not acct then
  return { 'NOACCOUNT', '{}', '0' }
end
local now = req.now

if req.op == 'STATE' then
  local current = num(redis.call('HGET', KEYS[1], 'stv')) or 0
  if req.stv < current then
    return { 'STALE', '{}', '0' }
  end
  redis.call('HSET', KEYS[1], 'st', req.st, 'stv', I(req.stv))
  return { 'OK', '{}', '0' }
end

if req.rid ~= '' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local out = { 'REPLAY', seen, '0' }
    for _, e in ipairs(redis.call('HVALS', KEYS[5])) do
      out[#out + 1] = e
    end
    return out
  end
end

local pol = req.pol
local version = redis.call('HINCRBY', KEYS[1], 'pver', 1)
redis.call('HSET', KEYS[1], 'mode', pol.mode, 'cur', pol.cur, 'lim', pol.lim, 't80', pol.t80,
  'fua', pol.fua, 'fur', pol.fur, 'fuf', pol.fuf)
if pol.low == '' then
  redis.call('HDEL', KEYS[1], 'low')
else
  redis.call('HSET', KEYS[1], 'low', pol.low)
end

local records = {}
local main_id = 'main-' .. pol.cur
if redis.call('HEXISTS', KEYS[2], main_id) == 0 then
  local meta = { u = 'm:' .. pol.cur, p = 100, f = 0, t = 0, sv = {}, rg = {}, main = 1, o = now, label = '' }
  redis.call('HSET', KEYS[2], main_id, J(meta))
  redis.call('HSET', KEYS[3], main_id .. ':a', '0', main_id .. ':r', '0')
  records[#records + 1] = bucket_meta_record(main_id, meta)
end
records[#records + 1] = {
  k = 'P', v = version, mode = pol.mode, cur = pol.cur, lim = pol.lim, low = pol.low,
  fua = pol.fua, fur = pol.fur, fuf = pol.fuf,
}
if req.rid ~= '' then
  records[#records + 1] = { k = 'K', scope = 'policy', rid = req.rid, fp = req.fp, res = req.acct }
end
local entries = journal(acct, KEYS[5], records, now)
local answer = J({ v = version, fp = req.fp })
if req.rid ~= '' then
  redis.call('SET', KEYS[4], answer, 'EX', I(req.win))
end
local touch = want_visit(acct, now + req.jd)
local out = { 'OK', answer, I(touch) }
for _, e in ipairs(entries) do
  out[#out + 1] = e
end
return out
