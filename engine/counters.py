"""Hot counters in Redis, shared by every worker: frequency caps and per-channel rate limits.

They live in their own Redis database (Dramatiq's maintenance runs KEYS over its
own), every key has a TTL, and a whole chunk is checked in one Lua call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import redis

from engine.planner import window
from engine.settings import Settings
from preferences.model import Cap

# For each group (one recipient's caps), check every counter is under its limit and,
# only if all are, increment them all. Returns, per group, 0 when admitted or the
# 1-based position of the first counter that was full. A chunk's thousands of counters
# travel as three strings (group sizes; key names; limit and TTL pairs) rather than as
# thousands of arguments, which the client would pack one by one. The counters live in a
# standalone Redis database of their own, so the keys need not be declared in KEYS.
CHECK_AND_COUNT = """
local sizes, keys, numbers = {}, {}, {}
for n in string.gmatch(ARGV[1], '%d+') do sizes[#sizes + 1] = tonumber(n) end
for key in string.gmatch(ARGV[2], '[^\\n]+') do keys[#keys + 1] = key end
for n in string.gmatch(ARGV[3], '%d+') do numbers[#numbers + 1] = tonumber(n) end
local results = {}
local k = 1
for g, n in ipairs(sizes) do
  local full = 0
  for i = 0, n - 1 do
    local current = tonumber(redis.call('GET', keys[k + i]) or '0')
    if full == 0 and current >= numbers[(k + i) * 2 - 1] then full = i + 1 end
  end
  if full == 0 then
    for i = 0, n - 1 do
      redis.call('INCR', keys[k + i])
      redis.call('EXPIRE', keys[k + i], numbers[(k + i) * 2])
    end
  end
  results[g] = full
  k = k + n
end
return results
"""

# A fixed-window rate limit: take up to ARGV[2] of ARGV[1] slots; returns how many were granted.
TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[2])
local free = tonumber(ARGV[1]) - used
if free <= 0 then return 0 end
local take = math.min(free, want)
redis.call('INCRBY', KEYS[1], take)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return take
"""


@dataclass(frozen=True)
class CapCheck:
    """One recipient's caps to check: (counter name, cap) pairs."""

    recipient_id: str
    limits: Sequence[tuple[str, Cap]]


class Counters:
    """Caps and rate limits over a Redis connection."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._check = client.register_script(CHECK_AND_COUNT)
        self._take = client.register_script(TAKE)

    @classmethod
    def from_settings(cls, settings: Settings) -> Counters:
        client = redis.Redis.from_url(settings.redis_url, db=settings.counters_redis_db)
        return cls(client)

    def admit(self, checks: Sequence[CapCheck], at: datetime) -> list[datetime | None]:
        """For each check, None if admitted (and counted), else when the full window resets."""
        if not checks:
            return []
        sizes: list[str] = []
        keys: list[str] = []
        numbers: list[str] = []
        resets: list[list[datetime]] = []
        for check in checks:
            sizes.append(str(len(check.limits)))
            group_resets = []
            for name, cap in check.limits:
                index, resets_at = window(cap, at)
                keys.append(f"tidings:cap:{check.recipient_id}:{name}:{cap.per}:{index}")
                numbers += [str(cap.count), str(cap.per + 60)]
                group_resets.append(resets_at)
            resets.append(group_resets)
        args = [",".join(sizes), "\n".join(keys), ",".join(numbers)]
        results = self._check(keys=[], args=args)
        return [None if full == 0 else resets[i][int(full) - 1] for i, full in enumerate(results)]

    def take(self, channel: str, count: int, per: int, want: int, at: datetime) -> int:
        """Take up to `want` sends from a channel's rate limit window; returns how many."""
        index = int(at.timestamp()) // per
        key = f"tidings:rate:{channel}:{per}:{index}"
        return int(self._take(keys=[key], args=[count, want, per + 5]))

    def close(self) -> None:
        self.client.close()
