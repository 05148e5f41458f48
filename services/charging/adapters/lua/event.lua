-- event.lua: a one-shot charge, atomically with its idempotency record (CHG-8, CHG-2):
-- an EVENT credit-control request (direct debit, refund, balance check) or an offline usage
-- record rated by the rating service (UsageRated).
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- KEYS[2] bucket metadata       ch:{acct:<id>}:bm
-- KEYS[3] bucket amounts        ch:{acct:<id>}:bv
-- KEYS[4] idempotency record    ch:{acct:<id>}:s:<session id>  (EVENT requests)
--                               ch:{acct:<id>}:q:usage:<record>  (offline usage)
-- KEYS[5] journal               ch:{acct:<id>}:j
-- ARGV[1] JSON request:
--   a      DEBIT | REFUND | CHECK | OFFLINE
--   acct, now, win (s), jd (ms) as in credit_control.lua
--   sid, rn    EVENT requests: the session and request number
--   rgs        EVENT requests: rating groups as in credit_control.lua (w, p, mc, fr, rf, u, svc, g)
--   off        OFFLINE: {q amount (scaled, decimal string; negative: a credit back, e.g. a
--              re-rating that lowered the price), cur, svc, ref, why (optional reason)}
-- Returns {status, answer JSON, touch ms, journal entry JSON...}; status OK | REPLAY (with every
--   entry still in the journal) |
--   NOACCOUNT | OOO | NOBUCKET (offline usage in a currency the account holds no bucket of) |
--   TOOBIG (a credit back would take the bucket past the largest balance) | CURRENCY (answer
--   {i}: an EVENT's 0-based rating group asking for money in a currency the account holds
--   no bucket of; ADR 0035).
-- Answer: {now, rgs=[{g, rc, k, gu, cu, cm, cc}]} (amounts as decimal strings); direct debit
-- and balance check are all or nothing per rating group.

local req = cjson.decode(ARGV[1])
local acct = load_account(KEYS[1])
if not acct then
  return { 'NOACCOUNT', '{}', '0' }
end
local now = req.now

-- A replay also hands back whatever is still in the journal (this request's entries among
-- them if the first attempt died before committing): the caller commits before answering.
local function replay(answer)
  local out = { 'REPLAY', answer, '0' }
  for _, e in ipairs(redis.call('HVALS', KEYS[5])) do
    out[#out + 1] = e
  end
  return out
end

if req.a == 'OFFLINE' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    return replay(seen)
  end
elseif req.a ~= 'CHECK' then
  local prior = redis.call('HMGET', KEYS[4], 'rn', 'ans')
  local last = num(prior[1])
  if last then
    if req.rn == last then
      return replay(prior[2] or '{}')
    end
    if req.rn < last then
      return { 'OOO', '{}', '0' }
    end
  end
end

local buckets, by_id = load_buckets(KEYS[2], KEYS[3])
if req.a ~= 'OFFLINE' then
  local foreign = foreign_currency(buckets, req.rgs)
  if foreign then
    return { 'CURRENCY', J({ i = I(foreign - 1) }), '0' }
  end
end
local before = money_total(acct, buckets)
local answers = {}

if req.a == 'OFFLINE' then
  local off = req.off
  local amount = tonumber(off.q)
  local unit = 'm:' .. off.cur
  local list = draw_list(acct, buckets, unit, off.svc, nil, now)
  local force_on = by_id['main-' .. off.cur]
  if force_on and force_on.u ~= unit then
    force_on = nil
  end
  if #list == 0 and not force_on then
    return { 'NOBUCKET', '{}', '0' }
  end
  if amount < 0 then
    -- A correction in the customer's favour goes back where usage is debited from.
    local target = force_on or list[1]
    if not credit(target, -amount, 0, 'OFFLINE_USAGE') then
      return { 'TOOBIG', '{}', '0' }
    end
    answers[1] = { g = 0, rc = 'OK', k = 'm', gu = '0', cu = '0', cm = I(amount), cc = off.cur, un = '0' }
  else
    -- The usage already happened: it is debited even below the floor (a prepaid debt).
    local un = charge(acct, list, amount, 0, 'OFFLINE_USAGE', true, force_on)
    answers[1] = { g = 0, rc = 'OK', k = 'm', gu = '0', cu = '0', cm = I(amount - un), cc = off.cur, un = I(un) }
  end
else
  for _, r in ipairs(req.rgs) do
    local ans = { g = r.g, rc = 'OK', k = '', gu = 0, cu = 0, cm = 0, cc = r.mc }
    local ulist = draw_list(acct, buckets, r.u, r.svc, r.g, now)
    local mlist = {}
    if r.mc ~= '' then
      mlist = draw_list(acct, buckets, 'm:' .. r.mc, r.svc, r.g, now)
    end
    local uh, mh = total_headroom(acct, ulist), total_headroom(acct, mlist)
    if req.a == 'REFUND' then
      if #ulist > 0 then
        if credit(ulist[1], r.w, r.g, 'REFUND') then
          ans.k, ans.gu, ans.cu = 'u', r.w, r.w
        else
          ans.rc = 'TOOBIG'
        end
      elseif r.p >= 0 and r.mc ~= '' then
        local target = by_id['main-' .. r.mc] or mlist[1]
        if not target then
          ans.rc = 'NOBUCKET'
        elseif credit(target, r.p, r.g, 'REFUND') then
          ans.k, ans.gu, ans.cm = 'm', r.w, r.p
        else
          ans.rc = 'TOOBIG'
        end
      else
        ans.rc = 'RATING'
      end
    elseif not allowed(acct, r.fr) then
      ans.rc = 'DENIED'
    elseif r.fr == 1 or r.p == 0 and uh < r.w then
      ans.k, ans.gu = 'f', r.w
    elseif uh >= r.w then
      ans.k, ans.gu = 'u', r.w
      if req.a == 'DEBIT' then
        charge(acct, ulist, r.w, r.g, 'DIRECT_DEBIT', false, nil)
        ans.cu = r.w
      end
    elseif r.p > 0 and mh >= r.p then
      ans.k, ans.gu = 'm', r.w
      if req.a == 'DEBIT' then
        charge(acct, mlist, r.p, r.g, 'DIRECT_DEBIT', false, nil)
        ans.cm = r.p
      end
    elseif r.p < 0 and r.rf == 1 and uh == 0 then
      ans.rc = 'RATING'
    else
      ans.rc = 'NOCREDIT'
    end
    answers[#answers + 1] = {
      g = ans.g, rc = ans.rc, k = ans.k, gu = I(ans.gu), cu = I(ans.cu), cm = I(ans.cm), cc = ans.cc,
    }
  end
end

if req.a == 'CHECK' then
  return { 'OK', J({ now = now, rgs = answers }), '0' }
end

save_buckets(KEYS[3], buckets)
local after = money_total(acct, buckets)
local answer = J({ now = now, rgs = answers })

local extra = {}
if req.a == 'OFFLINE' then
  extra = { r = req.off.ref, why = req.off.why }
else
  extra = { s = req.sid, n = req.rn }
end
local records = move_records(extra)
for _, ev in ipairs(threshold_events(acct, before, after)) do
  ev.k = 'E'
  records[#records + 1] = ev
end
if #MOVES > 0 and req.a ~= 'OFFLINE' then
  records[#records + 1] = { k = 'C', s = req.sid, n = req.rn, st = 'C', t = 'E', ans = answer }
end
local entries = journal(acct, KEYS[5], records, now)

if req.a == 'OFFLINE' then
  redis.call('SET', KEYS[4], answer, 'EX', I(req.win))
else
  redis.call('HSET', KEYS[4], 'st', 'C', 'rn', I(req.rn), 'ans', answer)
  redis.call('EXPIRE', KEYS[4], I(req.win))
end

local touch = 0
if #entries > 0 then
  touch = want_visit(acct, now + req.jd)
end
local out = { 'OK', answer, I(touch) }
for _, e in ipairs(entries) do
  out[#out + 1] = e
end
return out
