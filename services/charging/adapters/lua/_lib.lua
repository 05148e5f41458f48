-- _lib.lua: the prelude every charging script is loaded with (RedisBalanceStore joins
-- it in front of each script's own text; it is never run alone).
--
-- Numbers. Every amount is an integer in its unit's fixed scale:
--   money          10^-d of the currency unit, d = max(6, the currency's minor digits)
--                  (micro-EUR, micro-JPY, satoshi for BTC)
--   time           seconds
--   volume         bytes
--   service units  a count (SMS, plays, points)
-- Lua numbers are IEEE doubles, exact for integers below 2^53. Requests carry at most
-- 10^15 per amount and every credit is refused when a bucket would exceed 2^52 (MAXBAL);
-- debits stop at -2^52. So every sum and difference below stays exact. Integers go back
-- to Redis through I() (string.format %d): tostring() would print 1e+15. Tables go out
-- through J(), never cjson.encode: Redis's cjson prints numbers with at most 14
-- significant digits (1.2345678901234e+14), which would drop the last units of any
-- amount of 10^14 or more (100 TB in bytes, 10^8 IDR in micro-units).
--
-- Keys. Everything of an account shares its hash tag, so the scripts run unchanged on
-- Redis Cluster: ch:{acct:<id>}:a (account hash), :bm (bucket metadata), :bv (bucket
-- amounts), :s:<session> (session hash), :x (reservation expiry zset), :j (journal hash),
-- :q:<key> (idempotent answers), :rb (rebuild marker). Scripts that reach a session by
-- name build its key from the account prefix; it is in the same slot.
--
-- The rules mirror services/charging/domain (buckets.py, wallet.py, thresholds.py);
-- a differential test runs both on random cases.

local MAXBAL = 4503599627370496 -- 2^52
local NO_END = 4611686018427387904 -- 2^62: sorts a bucket without end of validity last

local function I(n)
  return string.format('%d', n)
end

-- JSON of a table like cjson.encode's, with every integer written whole (see above).
-- cjson's output is kept whenever it has no exponent, so the common case costs one
-- scan of the text; only tables holding an integer of 10^14 or more are written again.
local function exact_json(v)
  local kind = type(v)
  if kind == 'number' then
    if v == math.floor(v) and v > -9.2e18 and v < 9.2e18 then
      return string.format('%d', v)
    end
    return string.format('%.17g', v)
  end
  if kind ~= 'table' then
    return cjson.encode(v)
  end
  local count, array = 0, true
  for k, _ in pairs(v) do
    count = count + 1
    if type(k) ~= 'number' then
      array = false
    end
  end
  if count == 0 then
    return '{}'
  end
  local parts = {}
  if array and count == #v then
    for i = 1, count do
      parts[i] = exact_json(v[i])
    end
    return '[' .. table.concat(parts, ',') .. ']'
  end
  for k, item in pairs(v) do
    local name = type(k) == 'number' and exact_json(k) or tostring(k)
    parts[#parts + 1] = cjson.encode(name) .. ':' .. exact_json(item)
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function J(v)
  local text = cjson.encode(v)
  if string.find(text, 'e+', 1, true) then
    return exact_json(v)
  end
  return text
end

local function num(v)
  if v == false or v == nil then
    return nil
  end
  return tonumber(v)
end

-- the account ---------------------------------------------------------------------------
local ACCOUNT_FIELDS = { 'mode', 'cur', 'st', 'ep', 'due', 'lim', 'low', 't80', 'fua', 'fur', 'fuf' }

local function load_account(key)
  local v = redis.call('HMGET', key, unpack(ACCOUNT_FIELDS))
  if not v[1] then
    return nil
  end
  return {
    key = key, mode = v[1], cur = v[2], st = v[3] or 'active', ep = v[4] or '0',
    due = num(v[5]), lim = num(v[6]) or 0, low = num(v[7]), t80 = num(v[8]) or 0,
    fua = v[9] or 'terminate', fur = v[10] or '', fuf = v[11] or '',
  }
end

-- CHG-11: suspended and barred accounts keep free services; closed accounts nothing.
local function allowed(acct, free)
  if acct.st == 'active' then
    return true
  end
  return free == 1 and acct.st ~= 'closed'
end

-- buckets -------------------------------------------------------------------------------
local function load_buckets(bm_key, bv_key)
  local metas = redis.call('HGETALL', bm_key)
  local raw = redis.call('HGETALL', bv_key)
  local values = {}
  for i = 1, #raw, 2 do
    values[raw[i]] = tonumber(raw[i + 1])
  end
  local list, by_id = {}, {}
  for i = 1, #metas, 2 do
    local id = metas[i]
    local m = cjson.decode(metas[i + 1])
    local b = {
      id = id, u = m.u, p = m.p or 100, f = m.f or 0, t = m.t or 0, o = m.o or 0,
      main = (m.main == 1), sv = {}, rg = {}, any = true,
      a = values[id .. ':a'] or 0, r = values[id .. ':r'] or 0, dirty = false,
    }
    for _, s in ipairs(m.sv or {}) do
      b.sv[s] = true
      b.any = false
    end
    for _, g in ipairs(m.rg or {}) do
      b.rg[g] = true
      b.any = false
    end
    list[#list + 1] = b
    by_id[id] = b
  end
  return list, by_id
end

-- The first rating group (1-based) asking for money in a currency the account holds no
-- bucket of (nil: none): a bad request, not a lack of credit (ADR 0035).
local function foreign_currency(buckets, rgs)
  for i, r in ipairs(rgs) do
    if r.u and string.sub(r.u, 1, 2) == 'm:' then
      local held = false
      for _, b in ipairs(buckets) do
        if b.u == r.u then
          held = true
          break
        end
      end
      if not held then
        return i
      end
    end
  end
  return nil
end

local function save_buckets(bv_key, list)
  local args = {}
  for _, b in ipairs(list) do
    if b.dirty then
      args[#args + 1] = b.id .. ':a'
      args[#args + 1] = I(b.a)
      args[#args + 1] = b.id .. ':r'
      args[#args + 1] = I(b.r)
    end
  end
  if #args > 0 then
    redis.call('HSET', bv_key, unpack(args))
  end
end

-- The main money bucket of the account's currency is the credit line: postpaid and
-- hybrid accounts may take it down to minus the credit limit.
local function floor_of(acct, b)
  if b.main and acct.mode ~= 'prepaid' and b.u == 'm:' .. acct.cur then
    return -acct.lim
  end
  return 0
end

local function headroom(acct, b)
  local h = b.a - floor_of(acct, b)
  if h < 0 then
    return 0
  end
  return h
end

local function usable(b, now)
  return (b.f == 0 or b.f <= now) and (b.t == 0 or now < b.t)
end

local function applies(b, svc, rg)
  if b.any then
    return true
  end
  return (svc ~= nil and b.sv[svc] == true) or (rg ~= nil and b.rg[rg] == true)
end

local function draws_before(x, y)
  local xm, ym = x.main and 1 or 0, y.main and 1 or 0
  if xm ~= ym then
    return xm < ym
  end
  if x.p ~= y.p then
    return x.p < y.p
  end
  local xt, yt = x.t, y.t
  if xt == 0 then
    xt = NO_END
  end
  if yt == 0 then
    yt = NO_END
  end
  if xt ~= yt then
    return xt < yt
  end
  if x.o ~= y.o then
    return x.o < y.o
  end
  return x.id < y.id
end

-- The buckets of `unit` a rating group may draw from now, in draw order (buckets.py).
local function draw_list(acct, buckets, unit, svc, rg, now)
  local out = {}
  if unit == nil or unit == '' then
    return out
  end
  local money = string.sub(unit, 1, 2) == 'm:'
  for _, b in ipairs(buckets) do
    if b.u == unit and usable(b, now) and applies(b, svc, rg)
        and not (money and acct.mode == 'postpaid' and not b.main) then
      out[#out + 1] = b
    end
  end
  table.sort(out, draws_before)
  return out
end

local function total_headroom(acct, list)
  local sum = 0
  for _, b in ipairs(list) do
    sum = sum + headroom(acct, b)
  end
  return sum
end

-- The committed money of the account's currency: credits minus debits (thresholds.py).
local function money_total(acct, buckets)
  local unit, sum = 'm:' .. acct.cur, 0
  for _, b in ipairs(buckets) do
    if b.u == unit then
      sum = sum + b.a + b.r
    end
  end
  return sum
end

-- movements (ledger entries to be) ----------------------------------------------------------
local MOVES = {}
local MOVE_INDEX = {}

local function move(b, direction, amount, rg, kind)
  if amount <= 0 then
    return
  end
  local key = b.id .. '|' .. direction .. '|' .. tostring(rg or 0) .. '|' .. kind
  local m = MOVE_INDEX[key]
  if m then
    m.q = m.q + amount
  else
    m = { b = b.id, u = b.u, d = direction, q = amount, g = rg or 0, ek = kind }
    MOVES[#MOVES + 1] = m
    MOVE_INDEX[key] = m
  end
  b.dirty = true
end

-- Hold up to `want` from the list's headroom, in order; returns taken and allocations.
local function hold(acct, list, want)
  local left, alloc = want, {}
  for _, b in ipairs(list) do
    if left <= 0 then
      break
    end
    local h = headroom(acct, b)
    if h > 0 then
      local t = math.min(h, left)
      b.a = b.a - t
      b.r = b.r + t
      b.dirty = true
      alloc[#alloc + 1] = { b.id, t }
      left = left - t
    end
  end
  return want - left, alloc
end

-- Debit `need` from a reservation's allocations (in order) and release what is left of
-- them; returns the part of `need` the reservation did not cover.
local function consume(by_id, alloc, need, rg, kind)
  for _, pair in ipairs(alloc or {}) do
    local b = by_id[pair[1]]
    local held = pair[2]
    if b and held > 0 then
      local t = math.min(held, need)
      if t > 0 then
        b.r = b.r - t
        move(b, 'D', t, rg, kind)
        need = need - t
      end
      local rest = held - t
      if rest > 0 then
        b.r = b.r - rest
        b.a = b.a + rest
      end
      b.dirty = true
    end
  end
  return need
end

-- Debit `need` from the list's headroom in order; usage that already happened is then
-- forced onto `force_on` (or the list's last bucket), below its floor if need be, but
-- never below -MAXBAL. Returns what could not be charged at all.
local function charge(acct, list, need, rg, kind, force, force_on)
  for _, b in ipairs(list) do
    if need <= 0 then
      break
    end
    local h = headroom(acct, b)
    if h > 0 then
      local t = math.min(h, need)
      b.a = b.a - t
      move(b, 'D', t, rg, kind)
      need = need - t
    end
  end
  if need > 0 and force then
    local fb = force_on or list[#list]
    if fb then
      local t = math.min(need, fb.a + MAXBAL)
      if t > 0 then
        fb.a = fb.a - t
        move(fb, 'D', t, rg, kind)
        need = need - t
      end
    end
  end
  return need
end

-- Credit a bucket; false when it would hold more than MAXBAL.
local function credit(b, amount, rg, kind)
  if b.a + b.r + amount > MAXBAL then
    return false
  end
  b.a = b.a + amount
  move(b, 'C', amount, rg, kind)
  return true
end

-- thresholds (thresholds.py) ------------------------------------------------------------
local function threshold_events(acct, before, after)
  local events = {}
  if acct.low and before >= acct.low and acct.low > after then
    events[#events + 1] = { type = 'BalanceLow', cur = acct.cur, bal = I(after), thr = I(acct.low) }
  end
  if acct.lim > 0 and acct.mode ~= 'prepaid' then
    local ub, ua = math.max(0, -before), math.max(0, -after)
    if ub < acct.t80 and acct.t80 <= ua then
      events[#events + 1] = { type = 'CreditLimitReached', cur = acct.cur, pct = 80, used = I(ua), lim = I(acct.lim) }
    end
    if ub < acct.lim and acct.lim <= ua then
      events[#events + 1] = { type = 'CreditLimitReached', cur = acct.cur, pct = 100, used = I(ua), lim = I(acct.lim) }
    end
  end
  return events
end

-- the journal ------------------------------------------------------------------------------
-- Every change SQL must learn is appended to the account's journal in the same script;
-- the caller commits the entries to the ledger (idempotently, by entry id) before it
-- answers, then deletes them; a reconciler drains what a crashed process left behind.
-- `records` are tables with a field k (L ledger, B bucket, P policy, C session, E event,
-- K idempotency key); each gets an id <epoch>-<seq> unique across Redis incarnations.
local function journal(acct, journal_key, records, now)
  if #records == 0 then
    return {}
  end
  local last = redis.call('HINCRBY', acct.key, 'seq', #records)
  local args, out = {}, {}
  for i, rec in ipairs(records) do
    rec.id = acct.ep .. '-' .. I(last - #records + i)
    rec.at = now
    local text = J(rec)
    args[#args + 1] = rec.id
    args[#args + 1] = text
    out[#out + 1] = text
  end
  redis.call('HSET', journal_key, unpack(args))
  return out
end

-- Ledger records of the movements, in the order they happened.
local function move_records(extra)
  local records = {}
  for _, m in ipairs(MOVES) do
    local rec = { k = 'L', b = m.b, u = m.u, d = m.d, q = I(m.q), g = m.g, ek = m.ek }
    for key, value in pairs(extra) do
      rec[key] = value
    end
    records[#records + 1] = rec
  end
  return records
end

-- The sweeper must visit the account by `wanted` (ms); lower the account's registered
-- due time when needed and tell the caller to lower it in the global index too.
local function want_visit(acct, wanted)
  if wanted and (not acct.due or wanted < acct.due) then
    redis.call('HSET', acct.key, 'due', I(wanted))
    acct.due = wanted
    return wanted
  end
  return 0
end

local function bucket_meta_record(id, meta)
  return { k = 'B', b = id, meta = meta }
end
