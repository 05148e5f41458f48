-- credit_control.lua: one INITIAL, UPDATE or TERMINATE request of a credit-control session,
-- atomically: check-and-reserve (INITIAL), debit-used-and-re-reserve (UPDATE),
-- debit-used-and-release (TERMINATE), with the session's idempotency (CHG-1..4, 7, 11).
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- KEYS[2] bucket metadata       ch:{acct:<id>}:bm
-- KEYS[3] bucket amounts        ch:{acct:<id>}:bv
-- KEYS[4] the session           ch:{acct:<id>}:s:<session id>
-- KEYS[5] reservation expiry    ch:{acct:<id>}:x   (zset: session id -> sweep-at ms)
-- KEYS[6] journal               ch:{acct:<id>}:j   (hash: entry id -> JSON)
-- ARGV[1] JSON request:
--   t      'I' | 'U' | 'T'            sid  session id          rn  request number
--   acct   account id                 now  ms (the injected clock)
--   sweep  ms at which the reservations made now are swept (validity + grace)
--   win    seconds a session without reservations is remembered (idempotency window)
--   jd     ms after which the reconciler drains journal entries a crash left behind
--   rgs    list of rating groups, each:
--     g   rating group    svc  service name    u  unit key of the service ('t', 'u:sms', 'm:EUR')
--     fr  1 when free     w  units wanted (-1: none)
--     p   price of w in money (scaled; -1: not priced)      mc  price currency ('' if none)
--     x   units used (-1: none)   c  price of x (scaled; -1: not priced)
--     rf  1 when rating could not price the service
-- Returns {status, answer JSON, touch ms ('0': none), journal entry JSON...} where status is
--   OK | REPLAY (the stored answer of the same request number) | NOACCOUNT |
--   OOO (older number, or INITIAL on an existing session) | CLOSED (session terminated).
-- Answer: {now, st, fua, fur, fuf (the account's final-unit action), rgs=[{g, rc (OK|DENIED|NOCREDIT|RATING|UNKNOWN), k (u|m|f|''), gu (units
--   granted, '-1': money partial, the caller converts rq), rq, fin (0|1), cu (units charged),
--   cm (money charged), cc (currency of cm), un (uncharged)}]}; numbers as decimal strings.

local req = cjson.decode(ARGV[1])
local acct = load_account(KEYS[1])
if not acct then
  return { 'NOACCOUNT', '{}', '0' }
end
local now = req.now

local flat = redis.call('HGETALL', KEYS[4])
local sess = { g = {} }
for i = 1, #flat, 2 do
  local field = flat[i]
  if string.sub(field, 1, 2) == 'g:' then
    sess.g[tonumber(string.sub(field, 3))] = cjson.decode(flat[i + 1])
  else
    sess[field] = flat[i + 1]
  end
end
local st, last = sess.st, num(sess.rn)

if st then
  if req.rn == last then
    local out = { 'REPLAY', sess.ans or '{}', '0' }
    local ids = cjson.decode(sess.ent or '[]')
    if #ids > 0 then
      for _, e in ipairs(redis.call('HMGET', KEYS[6], unpack(ids))) do
        if e then
          out[#out + 1] = e
        end
      end
    end
    return out
  end
  if req.rn < last or req.t == 'I' then
    return { 'OOO', '{}', '0' }
  end
  if st == 'C' then
    return { 'CLOSED', '{}', '0' }
  end
end

local late = (st == 'X')
local buckets, by_id = load_buckets(KEYS[2], KEYS[3])
local before = money_total(acct, buckets)

local function settle_used(r, res)
  -- Debit the used units and release whatever the old reservation still holds.
  local ans = { cu = 0, cm = 0, un = 0, cc = '' }
  local x = r.x
  if x < 0 then
    x = 0
  end
  if res and res.k == 'm' then
    ans.cc = res.cur
  elseif r.mc ~= '' then
    ans.cc = r.mc
  end
  if r.fr == 1 or (res and res.k == 'f') then
    if res then
      consume(by_id, res.al, 0, r.g, 'USAGE')
    end
    return ans
  end
  local ulist = draw_list(acct, buckets, r.u, r.svc, r.g, now)
  if res and res.k == 'u' then
    local need = consume(by_id, res.al, x, r.g, 'USAGE')
    local force_on = nil
    if res.al and #res.al > 0 then
      force_on = by_id[res.al[#res.al][1]]
    end
    ans.un = charge(acct, ulist, need, r.g, 'USAGE', true, force_on)
    ans.cu = x - ans.un
  elseif res and res.k == 'm' and (r.c >= 0 or x == 0) then
    local cost = math.max(r.c, 0)
    local need = consume(by_id, res.al, cost, r.g, 'USAGE')
    local mlist = draw_list(acct, buckets, 'm:' .. res.cur, r.svc, r.g, now)
    local force_on = nil
    if res.al and #res.al > 0 then
      force_on = by_id[res.al[#res.al][1]]
    end
    ans.un = charge(acct, mlist, need, r.g, 'USAGE', true, force_on)
    ans.cm = cost - ans.un
  else
    if res then
      consume(by_id, res.al, 0, r.g, 'USAGE')
    end
    if x > 0 then
      -- No reservation (resumed or swept session): the class a reservation would use.
      if total_headroom(acct, ulist) > 0 or r.c < 0 then
        ans.un = charge(acct, ulist, x, r.g, 'USAGE', true, nil)
        ans.cu = x - ans.un
      else
        local mlist = draw_list(acct, buckets, 'm:' .. r.mc, r.svc, r.g, now)
        ans.un = charge(acct, mlist, r.c, r.g, 'USAGE', true, nil)
        ans.cm = r.c - ans.un
        ans.cc = r.mc
      end
    end
  end
  return ans
end

local function reserve(r, ans)
  -- Free units before money: unit buckets while any has units, then money at the quoted price.
  if r.w <= 0 then
    ans.rc, ans.gu = 'OK', 0
    return nil
  end
  if r.fr == 1 then
    ans.rc, ans.k, ans.gu = 'OK', 'f', r.w
    return { k = 'f', al = {} }
  end
  local ulist = draw_list(acct, buckets, r.u, r.svc, r.g, now)
  local mlist = {}
  if r.p > 0 and r.mc ~= '' then
    mlist = draw_list(acct, buckets, 'm:' .. r.mc, r.svc, r.g, now)
  end
  if total_headroom(acct, ulist) > 0 then
    local taken, alloc = hold(acct, ulist, r.w)
    ans.rc, ans.k, ans.gu, ans.rq = 'OK', 'u', taken, taken
    if total_headroom(acct, ulist) == 0 and total_headroom(acct, mlist) == 0 then
      ans.fin = 1
    end
    return { k = 'u', al = alloc }
  end
  if r.p == 0 then
    ans.rc, ans.k, ans.gu = 'OK', 'f', r.w
    return { k = 'f', al = {} }
  end
  if r.p > 0 then
    local taken, alloc = hold(acct, mlist, r.p)
    if taken == 0 then
      ans.rc, ans.gu = 'NOCREDIT', 0
      return nil
    end
    ans.rc, ans.k, ans.rq = 'OK', 'm', taken
    if taken < r.p then
      ans.gu = -1
      ans.fin = 1
    else
      ans.gu = r.w
      if total_headroom(acct, mlist) == 0 then
        ans.fin = 1
      end
    end
    return { k = 'm', al = alloc, cur = r.mc }
  end
  ans.gu = 0
  if r.rf == 1 then
    ans.rc = 'RATING'
  else
    ans.rc = 'NOCREDIT'
  end
  return nil
end

local held = {}
for g, res in pairs(sess.g) do
  held[g] = res
end
local answers = {}
for _, r in ipairs(req.rgs) do
  local res = held[r.g]
  held[r.g] = nil
  local ans = settle_used(r, res)
  ans.g, ans.k, ans.gu, ans.rq, ans.fin = r.g, '', 0, 0, 0
  if req.t == 'T' then
    ans.rc = 'OK'
  elseif late then
    ans.rc = 'UNKNOWN'
    if res then
      res.al = {}
      held[r.g] = res -- remember the class, for later late reports
    end
  elseif not allowed(acct, r.fr) then
    ans.rc = 'DENIED'
  else
    local new = reserve(r, ans)
    if new then
      held[r.g] = new
    end
  end
  answers[#answers + 1] = ans
end

local new_state = 'O'
if req.t == 'T' then
  new_state = 'C'
  for _, res in pairs(held) do
    consume(by_id, res.al, 0, 0, 'USAGE')
  end
  held = {}
elseif late then
  new_state = 'X'
end

save_buckets(KEYS[3], buckets)
local after = money_total(acct, buckets)

-- The answer, stored for replays: amounts as decimal strings (cjson prints doubles with 14 digits).
local out_rgs = {}
for _, a in ipairs(answers) do
  out_rgs[#out_rgs + 1] = {
    g = a.g, rc = a.rc, k = a.k, gu = I(a.gu), rq = I(a.rq), fin = a.fin,
    cu = I(a.cu), cm = I(a.cm), cc = a.cc, un = I(a.un),
  }
end
local answer = cjson.encode({
  now = now, st = new_state, rgs = out_rgs, fua = acct.fua, fur = acct.fur, fuf = acct.fuf,
})

local records = move_records({ s = req.sid, n = req.rn })
for _, ev in ipairs(threshold_events(acct, before, after)) do
  ev.k = 'E'
  records[#records + 1] = ev
end
if #MOVES > 0 then
  -- With effects in the ledger, the session's answer goes to SQL too: a rebuilt Redis
  -- still answers a retry of this request without charging it again.
  records[#records + 1] = { k = 'C', s = req.sid, n = req.rn, st = new_state, t = req.t, ans = answer }
end
local entries = journal(acct, KEYS[6], records, now)
local ids = {}
for _, rec in ipairs(records) do
  ids[#ids + 1] = rec.id
end

local fields = { 'st', new_state, 'rn', I(req.rn), 'ans', answer, 'ent', cjson.encode(ids) }
local any_held = false
for g, res in pairs(held) do
  fields[#fields + 1] = 'g:' .. I(g)
  fields[#fields + 1] = cjson.encode(res)
  for _, pair in ipairs(res.al or {}) do
    if pair[2] > 0 then
      any_held = true
    end
  end
end
for g, _ in pairs(sess.g) do
  if held[g] == nil then
    redis.call('HDEL', KEYS[4], 'g:' .. I(g))
  end
end
redis.call('HSET', KEYS[4], unpack(fields))

local wanted = nil
if any_held then
  -- Open reservations never expire by TTL: only the sweep returns them (CHG-4).
  redis.call('ZADD', KEYS[5], I(req.sweep), req.sid)
  redis.call('PERSIST', KEYS[4])
  wanted = req.sweep
else
  redis.call('ZREM', KEYS[5], req.sid)
  redis.call('EXPIRE', KEYS[4], I(req.win))
end
if #entries > 0 then
  local drain = now + req.jd
  if not wanted or drain < wanted then
    wanted = drain
  end
end
local touch = want_visit(acct, wanted)

local out = { 'OK', answer, I(touch) }
for _, e in ipairs(entries) do
  out[#out + 1] = e
end
return out
