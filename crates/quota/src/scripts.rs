//! The Lua scripts: each decision is one atomic round trip, whatever the number of replicas.
//!
//! Keys of one tenant share the hash tag `{<tenant id>}`, so they live in one cluster slot.
//!
//! - `rt` / `rk:<key id>`: GCRA theoretical arrival time (ms) of the tenant / of one API key.
//! - `tok:<YYYY-MM>`: tokens settled in that month (rebuilt from the ledger when missing).
//! - `res`: hash run id → tokens reserved by that run, not yet settled; `resv`: their sum
//!   (kept alongside so admission is O(1), not a walk over every run in progress).
//! - `runs`: sorted set of runs in progress, scored by when their reservation expires (a run
//!   whose process died is forgotten then, and its reservation released).
//!
//! Time is Redis's own (`TIME`), so replicas with skewed clocks still agree.

/// KEYS: rt, rk, tok, res, runs, resv.
/// ARGV: tenant rpm (-1 = not limited), key rpm (-1 = no key), mode (0 = rate only, 1 = admit a
/// run, 2 = extend a run's reservation), token limit, amount, run id, run ttl ms, max concurrent
/// runs, rebuilt counter (-1 = none), counter ttl s, container ttl ms.
/// Returns: status (0 ok, 1 tenant rate, 2 key rate, 3 tokens, 4 concurrent runs, 5 rebuild
/// needed), tenant remaining, tenant reset ms, key remaining, key reset ms, retry after ms,
/// tokens used, tokens reserved.
pub const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = 60000
local function gcra(key, rpm)
  if rpm < 0 then return true, 0, -1, 0, 0 end
  if rpm == 0 then return false, 0, 0, window, window end
  local interval = window / rpm
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - window
  if now < allow_at then
    return false, tat, 0, math.ceil(tat - now), math.ceil(allow_at - now)
  end
  local remaining = math.floor((now + window - new_tat) / interval)
  return true, new_tat, remaining, math.ceil(new_tat - now), 0
end
local t_rpm, k_rpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local t_ok, t_tat, t_rem, t_reset, t_retry = gcra(KEYS[1], t_rpm)
local k_ok, k_tat, k_rem, k_reset, k_retry = gcra(KEYS[2], k_rpm)
if not t_ok then return {1, t_rem, t_reset, k_rem, k_reset, t_retry, 0, 0} end
if not k_ok then return {2, t_rem, t_reset, k_rem, k_reset, k_retry, 0, 0} end
local mode = tonumber(ARGV[3])
local used, reserved = 0, 0
if mode > 0 then
  local run = ARGV[6]
  local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
  for _, member in ipairs(expired) do
    local held = redis.call('HGET', KEYS[4], member)
    if held then
      redis.call('HDEL', KEYS[4], member)
      redis.call('DECRBY', KEYS[6], held)
    end
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now) end
  if mode == 1 and redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[8]) then
    return {4, t_rem, t_reset, k_rem, k_reset, 1000, 0, 0}
  end
  local counter = redis.call('GET', KEYS[3])
  if not counter then
    local rebuilt = tonumber(ARGV[9])
    if rebuilt < 0 then return {5, t_rem, t_reset, k_rem, k_reset, 0, 0, 0} end
    redis.call('SET', KEYS[3], rebuilt, 'EX', ARGV[10])
    counter = rebuilt
  end
  used = tonumber(counter)
  reserved = tonumber(redis.call('GET', KEYS[6]) or 0)
  if reserved < 0 then reserved = 0 end
  local amount = tonumber(ARGV[5])
  if used + reserved + amount > tonumber(ARGV[4]) then
    return {3, t_rem, t_reset, k_rem, k_reset, 0, used, reserved}
  end
  redis.call('HINCRBY', KEYS[4], run, amount)
  redis.call('INCRBY', KEYS[6], amount)
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[7]), run)
  redis.call('PEXPIRE', KEYS[4], ARGV[11])
  redis.call('PEXPIRE', KEYS[5], ARGV[11])
  redis.call('PEXPIRE', KEYS[6], ARGV[11])
  reserved = reserved + amount
end
if t_rpm > 0 then redis.call('SET', KEYS[1], t_tat, 'PX', math.max(1, math.ceil(t_tat - now))) end
if k_rpm > 0 then redis.call('SET', KEYS[2], k_tat, 'PX', math.max(1, math.ceil(k_tat - now))) end
return {0, t_rem, t_reset, k_rem, k_reset, 0, used, reserved}
"#;

/// KEYS: tok (of the run's month), res, runs, resv. ARGV: run id, tokens used.
/// Releases the run's reservation and adds what it used to its month's counter — unless that
/// counter is missing, in which case it will be rebuilt from the ledger (which has the run).
pub const SETTLE: &str = r#"
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('DECRBY', KEYS[4], held)
end
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[2])
end
return -1
"#;

/// KEYS: tok (of the run's month), res, runs, resv. ARGV: run id, tokens used.
/// Settles a run only if its reservation is still held: the run is forgotten either way, but
/// what it used is counted only when the reservation was there — a run already settled (or whose
/// reservation expired, or that fail-open admitted without one) is never counted twice. Returns
/// 0 when nothing was held, 1 when settled, -1 when settled but the counter is missing (it will
/// be rebuilt from the ledger, which has the run).
pub const SETTLE_HELD: &str = r#"
redis.call('ZREM', KEYS[3], ARGV[1])
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DECRBY', KEYS[4], held)
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], ARGV[2])
  return 1
end
return -1
"#;

/// KEYS: tok, res, runs, resv. Returns: used (-1 if the counter is missing), reserved, runs
/// in progress (after releasing the reservations of runs that outlived any run).
pub const STATUS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, member in ipairs(expired) do
  local held = redis.call('HGET', KEYS[2], member)
  if held then
    redis.call('HDEL', KEYS[2], member)
    redis.call('DECRBY', KEYS[4], held)
  end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local counter = redis.call('GET', KEYS[1])
local used = -1
if counter then used = tonumber(counter) end
local reserved = tonumber(redis.call('GET', KEYS[4]) or 0)
if reserved < 0 then reserved = 0 end
return {used, reserved, redis.call('ZCARD', KEYS[3])}
"#;
