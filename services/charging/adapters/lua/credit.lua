-- credit.lua: one bucket-level change by an operator or a customer, atomically with its
-- idempotency record (AIP-155): create a bucket (with its initial amount), top up,
-- adjust (signed), credit a redeemed voucher (CHG-5, CHG-8), forfeit what an expired
-- bucket still has available (EXPIRE), close a bucket now (CLOSE) or edit its priority,
-- end or label (EDIT) (ADR 0021).
--
-- KEYS[1] account hash          ch:{acct:<id>}:a
-- KEYS[2] bucket metadata       ch:{acct:<id>}:bm
-- KEYS[3] bucket amounts        ch:{acct:<id>}:bv
-- KEYS[4] idempotency record    ch:{acct:<id>}:q:<scope>:<request id>
-- KEYS[5] journal               ch:{acct:<id>}:j
-- ARGV[1] JSON request:
--   op     CREATE | TOPUP | ADJUST | EXPIRE (u and q are ignored: the amount is the
--          bucket's available amount, if positive; what sessions hold stays reserved) |
--          CLOSE (the bucket's validity ends now, then as EXPIRE; not a main bucket) |
--          EDIT (edit: {p?, t?, label?} replace the bucket's priority, end (0: none) or
--          label; not a main bucket nor one that has ended; no amount moves)
--   acct, now, win (s), jd (ms) as in credit_control.lua
--   b      bucket id ('' for TOPUP of money: the main bucket of the currency, created if absent)
--   meta   CREATE: the bucket's metadata {u, p, f, t, sv, rg, main, o, label}
--   u      unit key of the amount          q  amount (scaled, decimal string; ADJUST signed)
--   ek     entry kind (BUCKET_GRANT, TOP_UP, ADJUSTMENT, VOUCHER)
--   ref, why   reference and reason kept on the ledger entry
--   scope, rid, fp   idempotency: scope, request id ('' = none) and request fingerprint
-- Returns {status, answer JSON, touch ms, journal entry JSON...}; status OK | REPLAY (with
--   every entry still in the journal) | NOACCOUNT | NOBUCKET | EXISTS (bucket id taken) |
--   UNIT (the amount's unit is not the bucket's) | TOOBIG (the bucket would pass +-2^52) |
--   LIVE (EXPIRE of a bucket whose validity has not ended) | MAIN (CLOSE or EDIT of a
--   main bucket) | BADEND (EDIT to an end not after now and the start) | ENDED (EDIT of,
--   or a credit to, a bucket whose validity has ended: it could never be drawn).
-- Answer: {b, e (ledger entry id or ''), a, r (bucket after, strings), fp}.

local req = cjson.decode(ARGV[1])
local acct = load_account(KEYS[1])
if not acct then
  return { 'NOACCOUNT', '{}', '0' }
end
local now = req.now

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

local buckets, by_id = load_buckets(KEYS[2], KEYS[3])
local before = money_total(acct, buckets)
local amount = tonumber(req.q)
local records = {}
local id = req.b

local function new_bucket(bucket_id, meta)
  redis.call('HSET', KEYS[2], bucket_id, J(meta))
  local b = {
    id = bucket_id, u = meta.u, p = meta.p or 100, f = meta.f or 0, t = meta.t or 0, o = meta.o or 0,
    main = (meta.main == 1), sv = {}, rg = {}, any = true, a = 0, r = 0, dirty = true,
  }
  buckets[#buckets + 1] = b
  by_id[bucket_id] = b
  records[#records + 1] = bucket_meta_record(bucket_id, meta)
  return b
end

local b
if req.op == 'CREATE' then
  if by_id[id] then
    return { 'EXISTS', '{}', '0' }
  end
  b = new_bucket(id, req.meta)
elseif req.op == 'TOPUP' and id == '' then
  local cur = string.sub(req.u, 3)
  id = 'main-' .. cur
  b = by_id[id]
  if not b then
    b = new_bucket(id, { u = req.u, p = 100, f = 0, t = 0, sv = {}, rg = {}, main = 1, o = now, label = '' })
  end
else
  b = by_id[id]
  if not b then
    return { 'NOBUCKET', '{}', '0' }
  end
end
-- A change of the bucket's metadata: in Redis and, through the bucket record with the
-- next version, in SQL (which applies only a newer version than it holds).
local function change_meta(changes)
  local meta = cjson.decode(redis.call('HGET', KEYS[2], id))
  for k, v in pairs(changes) do
    meta[k] = v
  end
  meta.v = (meta.v or 0) + 1
  redis.call('HSET', KEYS[2], id, J(meta))
  records[#records + 1] = bucket_meta_record(id, meta)
end

if req.op == 'CLOSE' or req.op == 'EDIT' then
  if b.main then
    return { 'MAIN', '{}', '0' }
  end
end
if req.op == 'EDIT' then
  -- An ended bucket was (or will be) forfeited: it is not brought back.
  if b.t ~= 0 and b.t <= now then
    return { 'ENDED', '{}', '0' }
  end
  local e = req.edit
  if e.t ~= nil and e.t ~= 0 and (e.t <= now or (b.f ~= 0 and e.t <= b.f)) then
    return { 'BADEND', '{}', '0' }
  end
  change_meta(e)
elseif req.op == 'CLOSE' then
  if b.t == 0 or now < b.t then
    change_meta({ t = now })
    b.t = now
  end
end
if req.op == 'EDIT' then
  amount = 0 -- metadata only
elseif req.op == 'EXPIRE' or req.op == 'CLOSE' then
  if b.t == 0 or now < b.t then
    return { 'LIVE', '{}', '0' }
  end
  -- Only the available amount: a session's reservation is still the session's, and a
  -- release after this is forfeited by the next pass.
  amount = 0
  if b.a > 0 then
    amount = -b.a
  end
elseif b.u ~= req.u then
  return { 'UNIT', '{}', '0' }
elseif amount > 0 and req.op ~= 'CREATE' and b.t ~= 0 and b.t <= now then
  return { 'ENDED', '{}', '0' }
end

if amount > 0 then
  if not credit(b, amount, 0, req.ek) then
    return { 'TOOBIG', '{}', '0' }
  end
elseif amount < 0 then
  -- An operator's debit may take the bucket below zero (a debt), never below -2^52.
  if b.a + amount < -MAXBAL then
    return { 'TOOBIG', '{}', '0' }
  end
  b.a = b.a + amount
  move(b, 'D', -amount, 0, req.ek)
end
b.dirty = true
save_buckets(KEYS[3], buckets)
local after = money_total(acct, buckets)

local ledger = move_records({ r = req.ref, why = req.why, rk = req.scope .. ':' .. req.rid })
for _, rec in ipairs(ledger) do
  records[#records + 1] = rec
end
for _, ev in ipairs(threshold_events(acct, before, after)) do
  ev.k = 'E'
  records[#records + 1] = ev
end
local key_record = nil
if req.rid ~= '' then
  key_record = { k = 'K', scope = req.scope, rid = req.rid, fp = req.fp, res = '' }
  records[#records + 1] = key_record
end
local entries = journal(acct, KEYS[5], records, now)
local entry_id = ''
for _, rec in ipairs(records) do
  if rec.k == 'L' then
    entry_id = rec.id
  end
end
if key_record then
  -- The key record names its resource: the bucket a CREATE made, else the ledger entry.
  if req.op == 'CREATE' or entry_id == '' then
    key_record.res = id
  else
    key_record.res = entry_id
  end
  entries[#entries] = J(key_record)
  redis.call('HSET', KEYS[5], key_record.id, entries[#entries])
end
local answer = J({ b = id, e = entry_id, a = I(b.a), r = I(b.r), fp = req.fp })
if req.rid ~= '' then
  redis.call('SET', KEYS[4], answer, 'EX', I(req.win))
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
