/* redis_lua.h -- the Lua scripts of the Redis queue adapter (queue/redis.c).
 *
 * Each op is one script, so Redis runs it alone: no other client's command
 * lands between its reads and writes. Every script gets the key prefix as
 * ARGV[1] and builds its key names from it (so they are not declared in
 * KEYS: the adapter needs a single Redis, not a Redis Cluster).
 *
 * Keys (P = the prefix, "concertd:wr:" by default):
 *   P t:<token>  hash u (user), s (state 1/2/3), q (arrival seq), e (entered
 *                at), a (ACTIVATED until); an EXPIRED one lives on for
 *                ARGV keep ms so its holder can still read EXPIRED
 *   P u:<user>   string: the user's live token
 *   P line       zset of WAITING tokens scored by arrival seq: ZRANK + 1 is
 *                the exact position, O(log n)
 *   P idle       zset of WAITING tokens scored by their last poll (ms)
 *   P active     zset of ACTIVATED tokens scored by when they expire (ms);
 *                ZCARD is the active count
 *   P seq        the arrival counter (INCR)
 *   P stats      hash admitted, expired: counters since the keys were made
 *   P lease      string: the id of the instance that admits, with a TTL
 *   P limits     hash max_active, admit_per_sec: set by the admin route,
 *                read by every instance's ticker
 *
 * A ticket reply is {token, user, state, position, active_until}. */
#pragma once

#define LUA_PRELUDE                                                                                \
    "local p = ARGV[1]\n"                                                                          \
    "local function tkey(t) return p .. 't:' .. t end\n"                                           \
    "local function ukey(u) return p .. 'u:' .. u end\n"                                           \
    "local function ticket(t)\n"                                                                   \
    "  local h = redis.call('HMGET', tkey(t), 'u', 's', 'a')\n"                                    \
    "  if not h[1] then return false end\n"                                                        \
    "  local s = tonumber(h[2])\n"                                                                 \
    "  local pos, a = 0, 0\n"                                                                      \
    "  if s == 1 then pos = (redis.call('ZRANK', p .. 'line', t) or -1) + 1 end\n"                 \
    "  if s == 2 then a = tonumber(h[3]) end\n"                                                    \
    "  return {t, h[1], s, pos, a}\n"                                                              \
    "end\n"                                                                                        \
    "local function expire(t, s, user, keep)\n"                                                    \
    "  if s == 1 then\n"                                                                           \
    "    redis.call('ZREM', p .. 'line', t)\n"                                                     \
    "    redis.call('ZREM', p .. 'idle', t)\n"                                                     \
    "  elseif s == 2 then\n"                                                                       \
    "    redis.call('ZREM', p .. 'active', t)\n"                                                   \
    "  else\n"                                                                                     \
    "    return 0\n"                                                                               \
    "  end\n"                                                                                      \
    "  redis.call('HSET', tkey(t), 's', 3)\n"                                                      \
    "  redis.call('PEXPIRE', tkey(t), keep)\n"                                                     \
    "  if redis.call('GET', ukey(user)) == t then redis.call('DEL', ukey(user)) end\n"             \
    "  redis.call('HINCRBY', p .. 'stats', 'expired', 1)\n"                                        \
    "  return 1\n"                                                                                 \
    "end\n"

/* ARGV p, user, new token, now. The user's live token (a WAITING one
 * counts as polled) or a new WAITING one at the back; the ticket gets a
 * sixth element, 1 when it is new. */
#define LUA_ENTER                                                                                  \
    LUA_PRELUDE                                                                                    \
    "local user, new, now = ARGV[2], ARGV[3], ARGV[4]\n"                                           \
    "local cur = redis.call('GET', ukey(user))\n"                                                  \
    "if cur then\n"                                                                                \
    "  local s = tonumber(redis.call('HGET', tkey(cur), 's'))\n"                                   \
    "  if s == 1 then redis.call('ZADD', p .. 'idle', 'XX', now, cur) end\n"                       \
    "  if s == 1 or s == 2 then\n"                                                                 \
    "    local r = ticket(cur)\n"                                                                  \
    "    r[6] = 0\n"                                                                               \
    "    return r\n"                                                                               \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "if redis.call('EXISTS', tkey(new)) == 1 then return redis.error_reply('token taken') end\n"   \
    "local seq = redis.call('INCR', p .. 'seq')\n"                                                 \
    "redis.call('HSET', tkey(new), 'u', user, 's', 1, 'q', seq, 'e', now)\n"                       \
    "redis.call('SET', ukey(user), new)\n"                                                         \
    "redis.call('ZADD', p .. 'line', seq, new)\n"                                                  \
    "redis.call('ZADD', p .. 'idle', now, new)\n"                                                  \
    "local r = ticket(new)\n"                                                                      \
    "r[6] = 1\n"                                                                                   \
    "return r\n"

/* ARGV p, token, now, touch (1: a poll by the holder). A ticket or nil. */
#define LUA_LOOKUP                                                                                 \
    LUA_PRELUDE                                                                                    \
    "if ARGV[4] == '1' then\n"                                                                     \
    "  if tonumber(redis.call('HGET', tkey(ARGV[2]), 's')) == 1 then\n"                            \
    "    redis.call('ZADD', p .. 'idle', 'XX', ARGV[3], ARGV[2])\n"                                \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "return ticket(ARGV[2])\n"

/* ARGV p, user. The user's live ticket or nil. */
#define LUA_LOOKUP_USER                                                                            \
    LUA_PRELUDE                                                                                    \
    "local cur = redis.call('GET', ukey(ARGV[2]))\n"                                               \
    "if not cur then return false end\n"                                                           \
    "local r = ticket(cur)\n"                                                                      \
    "if not r or r[3] == 3 then return false end\n"                                                \
    "return r\n"

/* ARGV p, token ('' = by user), user, keep. Expires the token (or the
 * user's live one). -1 when the token is unknown, else 0. */
#define LUA_EXPIRE                                                                                 \
    LUA_PRELUDE                                                                                    \
    "local t = ARGV[2]\n"                                                                          \
    "if t == '' then\n"                                                                            \
    "  t = redis.call('GET', ukey(ARGV[3]))\n"                                                     \
    "  if not t then return 0 end\n"                                                               \
    "end\n"                                                                                        \
    "local h = redis.call('HMGET', tkey(t), 'u', 's')\n"                                           \
    "if not h[1] then return -1 end\n"                                                             \
    "expire(t, tonumber(h[2]), h[1], ARGV[4])\n"                                                   \
    "return 0\n"

/* ARGV p, instance id, lease ms, now, max_active, max_admit, active ttl,
 * waiting idle, keep, batch. Only the holder of the lease (or whoever
 * takes a free one) ticks: {0, 0} for everyone else, {1, admitted} for it.
 * At most batch expiries of each kind and batch admissions per call. */
#define LUA_TICK                                                                                   \
    LUA_PRELUDE                                                                                    \
    "local id, now = ARGV[2], tonumber(ARGV[4])\n"                                                 \
    "local max_active, max_admit = tonumber(ARGV[5]), tonumber(ARGV[6])\n"                         \
    "local ttl, idle, keep, batch = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], "               \
    "tonumber(ARGV[10])\n"                                                                         \
    "local holder = redis.call('GET', p .. 'lease')\n"                                             \
    "if holder and holder ~= id then return {0, 0} end\n"                                          \
    "if holder then\n"                                                                             \
    "  redis.call('PEXPIRE', p .. 'lease', ARGV[3])\n"                                             \
    "else\n"                                                                                       \
    "  redis.call('SET', p .. 'lease', id, 'NX', 'PX', ARGV[3])\n"                                 \
    "end\n"                                                                                        \
    "local function sweep(key, upto)\n"                                                            \
    "  local ts = redis.call('ZRANGEBYSCORE', key, '-inf', upto, 'LIMIT', 0, batch)\n"             \
    "  for _, t in ipairs(ts) do\n"                                                                \
    "    local h = redis.call('HMGET', tkey(t), 'u', 's')\n"                                       \
    "    if h[1] then expire(t, tonumber(h[2]), h[1], keep) else redis.call('ZREM', key, t) end\n" \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "sweep(p .. 'active', now)\n"                                                                  \
    "sweep(p .. 'idle', now - idle)\n"                                                             \
    "local n = math.min(max_admit, max_active - redis.call('ZCARD', p .. 'active'), batch)\n"      \
    "local admitted = 0\n"                                                                         \
    "if n > 0 then\n"                                                                              \
    "  for _, t in ipairs(redis.call('ZRANGE', p .. 'line', 0, n - 1)) do\n"                       \
    "    redis.call('ZREM', p .. 'line', t)\n"                                                     \
    "    redis.call('ZREM', p .. 'idle', t)\n"                                                     \
    "    redis.call('HSET', tkey(t), 's', 2, 'a', now + ttl)\n"                                    \
    "    redis.call('ZADD', p .. 'active', now + ttl, t)\n"                                        \
    "    admitted = admitted + 1\n"                                                                \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "if admitted > 0 then redis.call('HINCRBY', p .. 'stats', 'admitted', admitted) end\n"         \
    "return {1, admitted}\n"

/* ARGV p, max_active, admit_per_sec ('0' leaves one unchanged; both '0':
 * a read). {max_active, admit_per_sec}, 0 for one never set. */
#define LUA_LIMITS                                                                                 \
    LUA_PRELUDE                                                                                    \
    "if ARGV[2] ~= '0' then redis.call('HSET', p .. 'limits', 'max_active', ARGV[2]) end\n"        \
    "if ARGV[3] ~= '0' then redis.call('HSET', p .. 'limits', 'admit_per_sec', ARGV[3]) end\n"     \
    "local l = redis.call('HMGET', p .. 'limits', 'max_active', 'admit_per_sec')\n"                \
    "return {tonumber(l[1] or 0), tonumber(l[2] or 0)}\n"

/* ARGV p, id. Gives the lease up if id holds it (a clean shutdown). */
#define LUA_RELEASE                                                                                \
    LUA_PRELUDE                                                                                    \
    "if redis.call('GET', p .. 'lease') == ARGV[2] then redis.call('DEL', p .. 'lease') end\n"     \
    "return 0\n"

/* ARGV p, active until, keep, then token, user pairs. Each user gets that
 * ACTIVATED token (a load test's pre-issued one); the user's other live
 * token, and a live token of that name held by another user, expire. */
#define LUA_GRANT                                                                                  \
    LUA_PRELUDE                                                                                    \
    "local till, keep = ARGV[2], ARGV[3]\n"                                                        \
    "for i = 4, #ARGV, 2 do\n"                                                                     \
    "  local t, user = ARGV[i], ARGV[i + 1]\n"                                                     \
    "  local cur = redis.call('GET', ukey(user))\n"                                                \
    "  if cur and cur ~= t then\n"                                                                 \
    "    local h = redis.call('HMGET', tkey(cur), 'u', 's')\n"                                     \
    "    if h[1] then expire(cur, tonumber(h[2]), h[1], keep) end\n"                               \
    "  end\n"                                                                                      \
    "  local h = redis.call('HMGET', tkey(t), 'u', 's')\n"                                         \
    "  if h[1] and h[1] ~= user then expire(t, tonumber(h[2]), h[1], keep) end\n"                  \
    "  redis.call('ZREM', p .. 'line', t)\n"                                                       \
    "  redis.call('ZREM', p .. 'idle', t)\n"                                                       \
    "  redis.call('DEL', tkey(t))\n"                                                               \
    "  redis.call('HSET', tkey(t), 'u', user, 's', 2, 'q', redis.call('INCR', p .. 'seq'),\n"      \
    "             'a', till)\n"                                                                    \
    "  redis.call('SET', ukey(user), t)\n"                                                         \
    "  redis.call('ZADD', p .. 'active', till, t)\n"                                               \
    "end\n"                                                                                        \
    "return 0\n"
