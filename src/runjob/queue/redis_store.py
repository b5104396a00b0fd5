"""The queue in Redis (`queue_backend = "redis://..."`): many hosts' workers on one queue.

Each change is one Lua script, so it is atomic on the server: a claim moves an entry from
`pending` to `running` exactly once whatever the number of workers and hosts. Times are the
server's (TIME), so hosts' clocks never decide a lease. Keys, under `runjob:queue:`:
`e:ID` (hash: the entry), `pending` (zset, score = order: priority, then enqueue seq),
`delayed` (zset, score = not_before), `running` (zset, score = lease end), `dead` (set),
`paused` (set), `workers` (zset, score = heartbeat expiry) and `w:ID` (worker info).
"""

from __future__ import annotations

import json

from runjob.errors import InternalError
from runjob.queue.store import ALL, FIELDS, new_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.queue.store import Item

P = "runjob:queue:"
NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"
# A pending entry's score: higher priority first (|priority| <= 1000), then the enqueue order.
ORDER = "local function order(prio, seq) return -tonumber(prio) * 1e12 + tonumber(seq) end\n"
# ARGV: id, job, params, priority, not_before, then the same for each further entry (all in one call).
PUT = (
    NOW
    + ORDER
    + """
for i = 1, #ARGV, 5 do
  local id, prio, nb = ARGV[i], ARGV[i + 3], tonumber(ARGV[i + 4])
  local seq = redis.call('INCR', KEYS[1] .. 'seq')
  redis.call('HSET', KEYS[1] .. 'e:' .. id, 'id', id, 'job', ARGV[i + 1], 'params', ARGV[i + 2],
    'priority', prio, 'enqueued_at', now, 'not_before', nb, 'state', 'pending', 'seq', seq, 'takes', 0)
  if nb > now then redis.call('ZADD', KEYS[1] .. 'delayed', nb, id)
  else redis.call('ZADD', KEYS[1] .. 'pending', order(prio, seq), id) end
end
"""
)
# Due delayed entries and lapsed leases back to pending, then the first pending of an unpaused job.
CLAIM = (
    NOW
    + ORDER
    + """
local p = KEYS[1]
local function back(id)
  local e = p .. 'e:' .. id
  redis.call('HSET', e, 'state', 'pending', 'worker', '', 'lease_until', '')
  redis.call('ZADD', p .. 'pending', order(redis.call('HGET', e, 'priority'), redis.call('HGET', e, 'seq')), id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', p .. 'delayed', id) back(id) end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'running', '-inf', '(' .. now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', p .. 'running', id) back(id) end
if redis.call('SISMEMBER', p .. 'paused', '*') == 1 then return false end
local start = 0
while true do
  local ids = redis.call('ZRANGE', p .. 'pending', start, start + 99)
  if #ids == 0 then return false end
  for _, id in ipairs(ids) do
    local e = p .. 'e:' .. id
    if redis.call('SISMEMBER', p .. 'paused', redis.call('HGET', e, 'job')) == 0 then
      local until_ = now + tonumber(ARGV[2])
      redis.call('ZREM', p .. 'pending', id)
      redis.call('ZADD', p .. 'running', until_, id)
      redis.call('HSET', e, 'state', 'running', 'worker', ARGV[1], 'lease_until', until_)
      redis.call('HINCRBY', e, 'takes', 1)
      return id
    end
  end
  start = start + 100
end
"""
)
RENEW = (
    NOW
    + """
for i = 3, #ARGV do
  local e = KEYS[1] .. 'e:' .. ARGV[i]
  if redis.call('HGET', e, 'worker') == ARGV[1] and redis.call('HGET', e, 'state') == 'running' then
    redis.call('ZADD', KEYS[1] .. 'running', now + tonumber(ARGV[2]), ARGV[i])
    redis.call('HSET', e, 'lease_until', now + tonumber(ARGV[2]))
  end
end
"""
)
# ARGV: id, worker, what (finish | bury | release), exit code, stderr tail
END = (
    ORDER
    + """
local p, id = KEYS[1], ARGV[1]
local e = p .. 'e:' .. id
if redis.call('HGET', e, 'worker') ~= ARGV[2] or redis.call('HGET', e, 'state') ~= 'running' then return 0 end
redis.call('ZREM', p .. 'running', id)
if ARGV[3] == 'finish' then redis.call('DEL', e)
elseif ARGV[3] == 'bury' then
  redis.call('HSET', e, 'state', 'dead', 'lease_until', '', 'exit_code', ARGV[4], 'stderr_tail', ARGV[5])
  redis.call('SADD', p .. 'dead', id)
else
  redis.call('HSET', e, 'state', 'pending', 'worker', '', 'lease_until', '')
  redis.call('ZADD', p .. 'pending', order(redis.call('HGET', e, 'priority'), redis.call('HGET', e, 'seq')), id)
end
return 1
"""
)
# ARGV: id, what (retry | drop | priority), new priority
ADMIN = (
    ORDER
    + """
local p, id = KEYS[1], ARGV[1]
local e = p .. 'e:' .. id
local state = redis.call('HGET', e, 'state')
if not state then return 0 end
if ARGV[2] == 'retry' then
  if state ~= 'dead' then return 0 end
  redis.call('SREM', p .. 'dead', id)
  redis.call('HSET', e, 'state', 'pending', 'worker', '', 'exit_code', '', 'stderr_tail', '', 'not_before', 0)
  redis.call('ZADD', p .. 'pending', order(redis.call('HGET', e, 'priority'), redis.call('HGET', e, 'seq')), id)
elseif ARGV[2] == 'drop' then
  if state == 'running' then return 0 end
  redis.call('ZREM', p .. 'pending', id) redis.call('ZREM', p .. 'delayed', id) redis.call('SREM', p .. 'dead', id)
  redis.call('DEL', e)
else
  redis.call('HSET', e, 'priority', ARGV[3])
  if redis.call('ZSCORE', p .. 'pending', id) then
    redis.call('ZADD', p .. 'pending', order(ARGV[3], redis.call('HGET', e, 'seq')), id) end
end
return 1
"""
)
BEAT = (
    NOW
    + """
redis.call('ZADD', KEYS[1] .. 'workers', now + tonumber(ARGV[3]), ARGV[1])
redis.call('SET', KEYS[1] .. 'w:' .. ARGV[1], ARGV[2], 'EX', math.ceil(tonumber(ARGV[3])))
redis.call('ZREMRANGEBYSCORE', KEYS[1] .. 'workers', '-inf', '(' .. now)
"""
)


class RedisStore:
    def __init__(self, url: str, password_env: str | None) -> None:
        from runjob.locks.redis_lock import client

        # Any: redis-py types every reply as a union of sync and async shapes; ours are bytes.
        self.r: Any = client(url, password_env)
        self.scripts = {
            name: self.r.register_script(src)
            for name, src in (
                ("put", PUT),
                ("claim", CLAIM),
                ("renew", RENEW),
                ("end", END),
                ("admin", ADMIN),
                ("beat", BEAT),
            )
        }

    def _run(self, name: str, *args: Any) -> Any:
        import redis

        try:
            return self.scripts[name](keys=[P], args=list(args))
        except redis.RedisError as e:
            raise InternalError(f"queue backend unavailable: {e}") from None

    def put(self, job: str, params: dict[str, str], priority: int, not_before: float) -> str:
        return self.put_many([(job, params, priority, not_before)])[0]

    def put_many(self, items: list[Item]) -> list[str]:
        """Every item in one script: atomic on the server, one round trip."""
        ids = [new_id() for _ in items]
        args: list[Any] = []
        for entry_id, (job, params, priority, not_before) in zip(ids, items, strict=True):
            args += [entry_id, job, json.dumps(params), priority, not_before]
        self._run("put", *args)
        return ids

    def claim(self, worker: str, lease: float) -> dict[str, Any] | None:
        entry_id = self._run("claim", worker, lease)
        return None if entry_id is None else self._get(entry_id.decode())

    def renew(self, ids: list[str], worker: str, lease: float) -> None:
        if ids:
            self._run("renew", worker, lease, *ids)

    def finish(self, entry_id: str, worker: str) -> None:
        self._run("end", entry_id, worker, "finish", "", "")

    def bury(self, entry_id: str, worker: str, exit_code: int | None, stderr_tail: str) -> None:
        self._run("end", entry_id, worker, "bury", "" if exit_code is None else exit_code, stderr_tail)

    def release(self, entry_id: str, worker: str) -> None:
        self._run("end", entry_id, worker, "release", "", "")

    def entries(self) -> list[dict[str, Any]]:
        ids = [
            i.decode()
            for i in self.r.zrange(P + "pending", 0, -1)
            + self.r.zrange(P + "delayed", 0, -1)
            + self.r.zrange(P + "running", 0, -1)
            + sorted(self.r.smembers(P + "dead"))
        ]
        found = [self._get(i) for i in ids]
        return sorted((e for e in found if e), key=lambda e: (-e["priority"], e["seq"]))

    def retry(self, entry_id: str) -> bool:
        return bool(self._run("admin", entry_id, "retry", "") == 1)

    def drop(self, entry_id: str) -> bool:
        return bool(self._run("admin", entry_id, "drop", "") == 1)

    def set_priority(self, entry_id: str, priority: int) -> bool:
        return bool(self._run("admin", entry_id, "priority", priority) == 1)

    def pause(self, job: str) -> None:
        self.r.sadd(P + "paused", job)

    def resume(self, job: str) -> None:
        if job == ALL:
            self.r.delete(P + "paused")
        else:
            self.r.srem(P + "paused", job, ALL)

    def paused(self) -> list[str]:
        return sorted(j.decode() for j in self.r.smembers(P + "paused"))

    def beat(self, worker: str, info: dict[str, Any], ttl: float) -> None:
        self._run("beat", worker, json.dumps(info), ttl)

    def gone(self, worker: str) -> None:
        self.r.zrem(P + "workers", worker)
        self.r.delete(P + "w:" + worker)

    def workers(self) -> list[dict[str, Any]]:
        ids = [i.decode() for i in self.r.zrange(P + "workers", 0, -1)]
        infos = self.r.mget([P + "w:" + i for i in ids]) if ids else []
        return [{"id": i} | json.loads(info) for i, info in zip(ids, infos, strict=True) if info]

    def close(self) -> None:
        self.r.close()

    def private_fds(self) -> tuple[int, ...]:
        return ()  # no lock lives in a descriptor: the server's keys and leases hold the state

    def _get(self, entry_id: str) -> dict[str, Any] | None:
        raw = {k.decode(): v.decode() for k, v in self.r.hgetall(P + "e:" + entry_id).items()}
        return _entry(raw) if raw else None


def _entry(raw: dict[str, str]) -> dict[str, Any]:
    def num(key: str, kind: type = float) -> Any:
        return kind(raw[key]) if raw.get(key) not in (None, "") else None

    entry: dict[str, Any] = {k: raw.get(k) or None for k in FIELDS}
    entry |= {
        "params": json.loads(raw["params"]),
        "priority": num("priority", int),
        "takes": num("takes", int),
        "enqueued_at": num("enqueued_at"),
        "not_before": num("not_before"),
        "lease_until": num("lease_until"),
        "exit_code": num("exit_code", int),
        "seq": num("seq", int),
    }
    entry["stderr_tail"] = raw.get("stderr_tail") or None
    return entry
