-- release.lua: an operator's release of a stuck open credit-control session (ADR 0035):
-- what it holds goes back to its buckets and it is closed as the Tcc supervision would
-- (sweep.lua): later usage reports are still debited, an UPDATE gets UNKNOWN_SESSION_ID.
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- KEYS[2] bucket metadata       ch:{acct:<id>}:bm
-- KEYS[3] bucket amounts        ch:{acct:<id>}:bv
-- KEYS[4] the session           ch:{acct:<id>}:s:<session id>
-- KEYS[5] reservation expiry    ch:{acct:<id>}:x
-- KEYS[6] journal               ch:{acct:<id>}:j
-- KEYS[7] idempotency record    ch:{acct:<id>}:q:release:<request id>
-- ARGV[1] JSON: {sid, rid (may be ''), fp (the request's fingerprint), why, now (ms), win (s),
--   jd (ms)}
-- Returns {status, answer JSON, touch ms, journal entry JSON...}; status OK | REPLAY (the
--   first answer of the request id) | NOACCOUNT | NOSESSION (never opened, or forgotten) |
--   NOTOPEN (answer {st}: closed or already released).
-- Answer: {fp, st, rn}. The session's record in SQL becomes the last answer without what it
-- held (and with rel = {why, at}), in state X: a rebuild does not hold it again.

local req = cjson.decode(ARGV[1])
local acct = load_account(KEYS[1])
if not acct then
  return { 'NOACCOUNT', '{}', '0' }
end
if req.rid ~= '' then
  local seen = redis.call('GET', KEYS[7])
  if seen then
    return { 'REPLAY', seen, '0' }
  end
end
local flat = redis.call('HGETALL', KEYS[4])
if #flat == 0 then
  return { 'NOSESSION', '{}', '0' }
end
local sess, held = {}, {}
for i = 1, #flat, 2 do
  if string.sub(flat[i], 1, 2) == 'g:' then
    held[flat[i]] = cjson.decode(flat[i + 1])
  else
    sess[flat[i]] = flat[i + 1]
  end
end
if sess.st ~= 'O' then
  return { 'NOTOPEN', J({ st = sess.st or '' }), '0' }
end

local buckets, by_id = load_buckets(KEYS[2], KEYS[3])
local fields = { 'st', 'X' }
for field, res in pairs(held) do
  consume(by_id, res.al, 0, 0, 'USAGE')
  res.al = {}
  fields[#fields + 1] = field
  fields[#fields + 1] = J(res) -- the class stays: a late report is debited from the right buckets
end
save_buckets(KEYS[3], buckets)
redis.call('HSET', KEYS[4], unpack(fields))
redis.call('EXPIRE', KEYS[4], I(req.win))
redis.call('ZREM', KEYS[5], req.sid)

local last = cjson.decode(sess.ans or '{}')
last.h, last.sw = nil, nil
last.rel = { why = req.why, at = I(req.now) }
local rn = num(sess.rn) or 0
local records = { { k = 'C', s = req.sid, n = rn, st = 'X', t = sess.t or 'U', ans = J(last) } }
local entries = journal(acct, KEYS[6], records, req.now)
local answer = J({ fp = req.fp, st = 'X', rn = I(rn) })
if req.rid ~= '' then
  redis.call('SET', KEYS[7], answer, 'EX', I(req.win))
end
local touch = want_visit(acct, req.now + req.jd)
local out = { 'OK', answer, I(touch) }
for _, e in ipairs(entries) do
  out[#out + 1] = e
end
return out
