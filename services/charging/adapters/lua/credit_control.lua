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
-- KEYS[7] the session's answers ch:{acct:<id>}:s:<session id>:h (hash: request number ->
--                               answer, e<number> -> its journal entry ids, t<number> ->
--                               its request type), so a
--                               retransmitted older request gets its answer (ADR 0035)
-- ARGV[1] JSON request:
--   t      'I' | 'U' | 'T'            sid  session id          rn  request number
--   acct   account id                 now  ms (the injected clock)
--   sweep  ms at which the reservations made now are swept (validity + grace)
--   win    seconds a session without reservations is remembered (idempotency window)
--   jd     ms after which the reconciler drains journal entries a crash left behind
--   t0     ms the session's usage is priced at (its start; kept in the session's position)
--   rgs    list of rating groups, each:
--     g   rating group    svc  service name    u  unit key of the service ('t', 'u:sms', 'm:EUR')
--     fr  1 when free     w  units wanted (-1: none)
--     mc  price currency ('' if none)          rf  1 when rating could not price the service
--     x   units used (-1: none)
--   and, for services priced by rating, prices of the session's cumulative position (the
--   units of this rating group charged in money so far, ``n``, see below):
--     cb  the n the prices were computed from (absent: not priced cumulatively)
--     c   price of n + x, the whole money-charged usage including this report (-1: none)
--     gb  the n a grant is priced from (n, or n + x when x is charged in money)
--     pg  price of gb           p  price of gb + w minus pg (what the grant costs; -1: none)
--     pn  price of gb + w + 1 minus price of gb + w (the unit after the grant)
--     p1  price of gb + 1 minus pg (the first money-charged unit, after unit buckets)
-- Returns {status, answer JSON, touch ms ('0': none), journal entry JSON...} where status is
--   OK | REPLAY (the stored answer of the same, or of an older, request number) | NOACCOUNT |
--   OOO (older number never answered, or INITIAL on an existing session) |
--   CLOSED (session terminated) | NOSESSION (UPDATE or TERMINATE of a session never opened,
--   or forgotten: RFC 4006's DIAMETER_UNKNOWN_SESSION_ID) | CURRENCY (answer {i}: the
--   0-based rating group asking for money in a currency the account holds no bucket of) |
--   STALE (the prices were computed from another position than the session's: answer
--   {t0, g={[rating group]={n, gb}}}; nothing changed, the caller prices again).
--
-- Cumulative pricing. Rating prices a call as a whole (connection fee and first increment
-- once per call), so each report is not priced on its own: the session keeps, per rating
-- group, ``n`` (units charged in money so far) and ``m`` (money debited for them so far),
-- in the session field 'cum' ({t0, g={['<rg>']={n, m}}}) and in every answer (so SQL keeps
-- it for a rebuild). A report of x units charged in money debits price(n + x) - m; units
-- drawn from unit buckets are not priced and leave n as it is.
-- Answer: {now, st, fua, fur, fuf (the account's final-unit action), h and sw (what the session
--   holds after the request, {[rating group]={k, al=[[bucket, amount]], cur}}, and the ms it
--   is swept at; absent when nothing is held), rgs=[{g, rc (OK|DENIED|NOCREDIT|RATING|UNKNOWN), k (u|m|f|''), gu (units
--   granted, '-1': money partial, the caller converts rq), rq, fin (0|1), cu (units charged),
--   cm (money charged), cc (currency of cm), un (uncharged), tu (units used in the session
--   so far, reported)}]}; numbers as decimal strings.

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
-- Amounts travel as decimal strings (cjson prints numbers with 14 significant digits).
req.t0 = req.t0 or now
local cum = { t0 = req.t0, g = {} }
if sess.cum then
  local saved = cjson.decode(sess.cum)
  cum.t0 = tonumber(saved.t0)
  for g, pos in pairs(saved.g or {}) do
    cum.g[g] = { n = tonumber(pos.n), m = tonumber(pos.m) }
  end
end
local function cum_text()
  local g = {}
  for key, pos in pairs(cum.g) do
    g[key] = { n = I(pos.n), m = I(pos.m) }
  end
  return J({ t0 = I(cum.t0), g = g })
end

local function position(g)
  local pos = cum.g[I(g)]
  if not pos then
    pos = { n = 0, m = 0 }
    cum.g[I(g)] = pos
  end
  return pos
end

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
  if req.rn < last then
    -- A retransmission of an older request: its answer, while the session lives (ADR 0035).
    local old = redis.call('HMGET', KEYS[7], I(req.rn), 'e' .. I(req.rn), 't' .. I(req.rn))
    if old[1] and old[3] == req.t then -- the same request (its type too), sent again
      local out = { 'REPLAY', old[1], '0' }
      local ids = cjson.decode(old[2] or '[]')
      if #ids > 0 then
        for _, e in ipairs(redis.call('HMGET', KEYS[6], unpack(ids))) do
          if e then
            out[#out + 1] = e
          end
        end
      end
      return out
    end
    return { 'OOO', '{}', '0' }
  end
  if req.t == 'I' then
    return { 'OOO', '{}', '0' }
  end
  if st == 'C' then
    return { 'CLOSED', '{}', '0' }
  end
end

-- Prices computed from another position (a concurrent request, a rebuilt session) are
-- refused before anything changes.
local function stale(hints)
  local out = {}
  for key, h in pairs(hints) do
    out[key] = { n = I(h.n), gb = h.gb and I(h.gb) or nil }
  end
  return { 'STALE', J({ t0 = I(cum.t0), g = out }), '0' }
end
local start_hints = {}
do
  local bad = false
  for _, r in ipairs(req.rgs) do
    local pos = cum.g[I(r.g)]
    local n = pos and pos.n or 0
    start_hints[I(r.g)] = { n = n }
    if r.cb and (r.cb ~= n or cum.t0 ~= req.t0) then
      bad = true
    end
  end
  if bad then
    return stale(start_hints)
  end
end

if not st and req.t ~= 'I' then
  -- RFC 4006: an UPDATE or TERMINATE needs a session its INITIAL opened (ADR 0035).
  return { 'NOSESSION', '{}', '0' }
end

local late = (st == 'X')
local buckets, by_id = load_buckets(KEYS[2], KEYS[3])
local foreign = foreign_currency(buckets, req.rgs)
if foreign then
  return { 'CURRENCY', J({ i = I(foreign - 1) }), '0' }
end
local before = money_total(acct, buckets)

-- The money x more units charged in money cost: the price of the whole money-charged usage
-- so far minus what was already debited for it (never negative), moving the position on.
local function money_due(r, x)
  if not r.cb then
    return math.max(r.c, 0) -- not priced cumulatively (no rating position)
  end
  if x <= 0 then
    return 0
  end
  local pos = position(r.g)
  local due = math.max(r.c - pos.m, 0)
  pos.n = pos.n + x
  pos.m = pos.m + due
  return due
end

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
    local cost = money_due(r, x)
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
      -- No reservation (a swept or released session, or a rebuilt one): the class a reservation would use.
      if total_headroom(acct, ulist) > 0 or r.c < 0 then
        ans.un = charge(acct, ulist, x, r.g, 'USAGE', true, nil)
        ans.cu = x - ans.un
      else
        local mlist = draw_list(acct, buckets, 'm:' .. r.mc, r.svc, r.g, now)
        local cost = money_due(r, x)
        ans.un = charge(acct, mlist, cost, r.g, 'USAGE', true, nil)
        ans.cm = cost - ans.un
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
  if (r.p > 0 or (r.cb and r.p == 0)) and r.mc ~= '' then
    mlist = draw_list(acct, buckets, 'm:' .. r.mc, r.svc, r.g, now)
  end
  -- RFC 4006: the grant that exhausts the credit is the final one. What is left after it
  -- must buy the next unit (p1: the first money-charged unit; pn: the unit after a money
  -- grant), else the grant carries the final-unit indication.
  if total_headroom(acct, ulist) > 0 then
    local taken, alloc = hold(acct, ulist, r.w)
    ans.rc, ans.k, ans.gu, ans.rq = 'OK', 'u', taken, taken
    if total_headroom(acct, ulist) == 0 and total_headroom(acct, mlist) < math.max(r.p1 or 0, 1) then
      ans.fin = 1
    end
    return { k = 'u', al = alloc }
  end
  if r.p == 0 and r.cb and r.mc ~= '' then
    -- Units the session already paid for (inside a charged increment): nothing to hold,
    -- but a money reservation all the same, so their use moves the priced position.
    ans.rc, ans.k, ans.gu, ans.rq = 'OK', 'm', r.w, 0
    ans.gb, ans.pg = r.gb or 0, r.pg or 0
    if (r.pn or 0) > 0 and total_headroom(acct, mlist) < r.pn then
      ans.fin = 1
    end
    return { k = 'm', al = {}, cur = r.mc }
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
    -- The position the grant was priced from: the caller sizes a partial grant from it.
    ans.gb, ans.pg = r.gb or 0, r.pg or 0
    if taken < r.p then
      ans.gu = -1
      ans.fin = 1
    else
      ans.gu = r.w
      if total_headroom(acct, mlist) < math.max(r.pn or 0, 1) then
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
  ans.tu = (num(sess['u:' .. I(r.g)]) or 0) + math.max(r.x, 0)
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
    local pos = cum.g[I(r.g)]
    local n = pos and pos.n or 0
    if r.gb and r.w > 0 and r.gb ~= n then
      -- The grant was priced from the wrong position (the report went to unit buckets, not
      -- money): nothing was written yet; the caller prices again from the right one.
      start_hints[I(r.g)].gb = n
      return stale(start_hints)
    end
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
    cu = I(a.cu), cm = I(a.cm), cc = a.cc, un = I(a.un), tu = I(a.tu),
    gb = a.gb and I(a.gb) or nil, pg = a.pg and I(a.pg) or nil,
  }
end
local cum_now = cum_text()
-- What the session holds after this request, and until when: SQL keeps it with the answer,
-- so a rebuild after a Redis loss holds the same amounts again (restore.lua) instead of
-- handing money already granted to another session (CHG-3 with CHG-9). Amounts as strings.
local holds = nil
for g, res in pairs(held) do
  local al = {}
  for _, pair in ipairs(res.al or {}) do
    al[#al + 1] = { pair[1], I(pair[2]) }
  end
  holds = holds or {}
  holds[I(g)] = { k = res.k, al = al, cur = res.cur }
end
local answer = J({
  now = now, st = new_state, rgs = out_rgs, fua = acct.fua, fur = acct.fur, fuf = acct.fuf,
  cum = next(cum.g) ~= nil and cjson.decode(cum_now) or nil,
  h = holds, sw = holds and I(req.sweep) or nil,
})

local records = move_records({ s = req.sid, n = req.rn })
for _, ev in ipairs(threshold_events(acct, before, after)) do
  ev.k = 'E'
  records[#records + 1] = ev
end
-- Every answer goes to SQL with the request's journal: a rebuilt Redis still answers a
-- retry of this request as the first time (CHG-2), without charging it again, and without
-- turning a refusal into a grant because credit was freed meanwhile; later reports of the
-- session are priced from the position the answer carries.
records[#records + 1] = { k = 'C', s = req.sid, n = req.rn, st = new_state, t = req.t, ans = answer }
local entries = journal(acct, KEYS[6], records, now)
local ids = {}
for _, rec in ipairs(records) do
  ids[#ids + 1] = rec.id
end

local fields = { 'st', new_state, 'rn', I(req.rn), 't', req.t, 'ans', answer, 'ent', J(ids) }
for _, a in ipairs(answers) do
  fields[#fields + 1] = 'u:' .. I(a.g)
  fields[#fields + 1] = I(a.tu)
end
local priced = false
for _, r in ipairs(req.rgs) do
  if r.cb then
    priced = true
  end
end
-- The session's start (t0) is kept from its first priced request on, so the whole call is
-- priced at the time it started (SQL learns it with the first position).
if priced or next(cum.g) ~= nil then
  fields[#fields + 1] = 'cum'
  fields[#fields + 1] = cum_now
end
local any_held = false
for g, res in pairs(held) do
  fields[#fields + 1] = 'g:' .. I(g)
  fields[#fields + 1] = J(res)
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
redis.call('HSET', KEYS[7], I(req.rn), answer, 'e' .. I(req.rn), J(ids), 't' .. I(req.rn), req.t)

local wanted = nil
if any_held then
  -- Open reservations never expire by TTL: only the sweep returns them (CHG-4).
  redis.call('ZADD', KEYS[5], I(req.sweep), req.sid)
  redis.call('PERSIST', KEYS[4])
  -- The answers live as long as the session can: its sweep, then the window.
  -- (relative: `now` is the injected clock, not Redis's)
  redis.call('PEXPIRE', KEYS[7], I(math.max(req.sweep - now, 0) + req.win * 1000))
  wanted = req.sweep
else
  redis.call('ZREM', KEYS[5], req.sid)
  redis.call('EXPIRE', KEYS[4], I(req.win))
  redis.call('EXPIRE', KEYS[7], I(req.win))
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
