"""Hot counters in Redis, shared by every worker: frequency caps and per-channel rate limits.

A cap counts notifications, not increments: each (recipient, counter) is a sorted set
whose members are the notification ids counted, scored by when they went out. Counting
the same notification again (a chunk replayed after a crash between this call and its
SQL commit, an email released after its inbox copy) is a no-op, so a cap is counted once
per notification that was written. From the scores every window is exact: any hour
ending now for caps of minutes or hours, the recipient's calendar for days and weeks.

The counters live in their own Redis database (Dramatiq's maintenance runs KEYS over its
own), every key has a TTL, and a whole chunk is checked in one Lua call. A sentinel key
marks counters that are complete; when Redis lost its data the sentinel is gone, the
call counts nothing and says so, and `engine.pipeline.caps` rebuilds them from SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from engine.pipeline.policy import DAY, cap_frees_at, cap_window
from engine.settings import Settings
from engine.store.redis_keys import RedisKeys, counters_url
from preferences.model import Cap

# ARGV: group sizes; one member (notification id) per group; then per counter its key,
# the lowest score in its window ('(' for exclusive), its limit, the key's TTL and the
# score below which the key's entries are in no window any more; and the score to count
# at. Each group is admitted — its member added to every counter that lacks it — only if
# every counter that lacks it is under its limit. Returns one entry per group refused,
# '<1-based group>:<1-based position of the full counter>:<score of the entry whose
# leaving frees it>' (most groups are admitted, and say nothing); or {'lost'} when the
# sentinel (key ARGV[8]) is missing. Thousands of counters
# travel as a few strings rather than as thousands of arguments; the counters' database
# is Tidings' own, so the keys need not be declared in KEYS.
CHECK_AND_COUNT = """
if redis.call('EXISTS', ARGV[8]) == 0 then return {'lost'} end
local function split(s, pattern)
  local out = {}
  for part in string.gmatch(s, pattern) do out[#out + 1] = part end
  return out
end
local sizes, members = split(ARGV[1], '%d+'), split(ARGV[2], '[^\\n]+')
local keys, lows = split(ARGV[3], '[^\\n]+'), split(ARGV[4], '[^,]+')
local numbers, prunes = split(ARGV[5], '%d+'), split(ARGV[6], '[^,]+')
local score = ARGV[7]
local results = {}
local k = 1
for g, size in ipairs(sizes) do
  local n, member, full = tonumber(size), members[g], '0'
  for i = k, k + n - 1 do
    if not redis.call('ZSCORE', keys[i], member) then
      local count = redis.call('ZCOUNT', keys[i], lows[i], '+inf')
      local limit = tonumber(numbers[i * 2 - 1])
      if count >= limit then
        local entry = redis.call(
          'ZRANGEBYSCORE', keys[i], lows[i], '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
        full = (i - k + 1) .. ':' .. entry[2]
        break
      end
    end
  end
  if full == '0' then
    for i = k, k + n - 1 do
      redis.call('ZADD', keys[i], 'NX', score, member)
      redis.call('ZREMRANGEBYSCORE', keys[i], '-inf', prunes[i])
      local ttl = tonumber(numbers[i * 2])
      if redis.call('TTL', keys[i]) < ttl then redis.call('EXPIRE', keys[i], ttl) end
    end
  end
  if full ~= '0' then results[#results + 1] = g .. ':' .. full end
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


class CountersLost(Exception):
    """The counters' Redis lost its data (no sentinel): rebuild them before counting."""


@dataclass(frozen=True)
class CapCheck:
    """One notification for one recipient against every cap that applies.

    `limits` are (counter name, cap) pairs; `zone` is the recipient's time zone, which
    day and week caps follow; `member` is what is counted (the notification id).
    """

    recipient_id: str
    member: str
    zone: str
    limits: Sequence[tuple[str, Cap]]


@dataclass(frozen=True)
class Counted:
    """A notification already sent to a recipient, for rebuilding the counters."""

    recipient_id: str
    counter: str
    member: str
    at: datetime


def _ttl(cap: Cap) -> int:
    """Seconds an entry can still matter to `cap`: its length, plus a day for calendar ones."""
    return cap.per + (DAY if cap.per % DAY == 0 else 60)


def _score(at: datetime) -> str:
    return f"{at.timestamp():.3f}"


@dataclass(frozen=True)
class _Shape:
    """What a check sends besides its keys: its counters' names, and per counter the
    lowest score in its window, its limit and TTL, and the score to prune below."""

    size: str
    names: list[str]
    lows: list[str]
    numbers: list[str]
    prunes: list[str]


def _shape(check: CapCheck, at: datetime) -> _Shape:
    windows = [cap_window(cap, check.zone, at) for _, cap in check.limits]
    oldest: dict[str, datetime] = {}
    longest: dict[str, int] = defaultdict(int)
    for (name, cap), (since, _) in zip(check.limits, windows, strict=True):
        oldest[name] = min(since, oldest.get(name, since))
        longest[name] = max(longest[name], _ttl(cap))
    shape = _Shape(str(len(check.limits)), [], [], [], [])
    for (name, cap), (since, inclusive) in zip(check.limits, windows, strict=True):
        shape.names.append(name)
        shape.lows.append(_score(since) if inclusive else "(" + _score(since))
        shape.numbers.extend((str(cap.count), str(longest[name])))
        shape.prunes.append("(" + _score(oldest[name]))
    return shape


class Counters:
    """Caps and rate limits over a Redis connection."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.client = client
        self.keys = keys
        self._check = client.register_script(CHECK_AND_COUNT)
        self._take = client.register_script(TAKE)

    @classmethod
    def from_settings(cls, settings: Settings) -> Counters:
        """Counters on the broker's Redis server, in database `counters_redis_db`."""
        client = redis.Redis.from_url(counters_url(settings))
        return cls(client, RedisKeys.from_settings(settings))

    def admit(self, checks: Sequence[CapCheck], at: datetime) -> list[datetime | None]:
        """For each check, None if admitted (and counted at `at`), else when the cap that
        refused it frees up. One round trip. Raises `CountersLost` (counting nothing)
        when the counters are not known to be complete."""
        if not checks:
            return []
        sizes: list[str] = []
        members: list[str] = []
        keys: list[str] = []
        lows: list[str] = []
        numbers: list[str] = []
        prunes: list[str] = []
        # Checks that share their limits and zone (a chunk's recipients alike) share their
        # windows; the limits stay alive for the call, so no identity is reused.
        shapes: dict[tuple[int, str], _Shape] = {}
        cap_key = self.keys.cap
        for check in checks:
            found = shapes.get((id(check.limits), check.zone))
            if found is None:
                found = shapes[(id(check.limits), check.zone)] = _shape(check, at)
            members.append(check.member)
            sizes.append(found.size)
            rid = check.recipient_id
            keys += [cap_key(rid, name) for name in found.names]
            lows += found.lows
            numbers += found.numbers
            prunes += found.prunes
        args = [
            ",".join(sizes),
            "\n".join(members),
            "\n".join(keys),
            ",".join(lows),
            ",".join(numbers),
            ",".join(prunes),
            _score(at),
            self.keys.caps_ready,
        ]
        refused = [r.decode() if isinstance(r, bytes) else str(r) for r in self._check(args=args)]
        if refused == ["lost"]:
            raise CountersLost("the counters' Redis has no sentinel: rebuild from SQL")
        out: list[datetime | None] = [None] * len(checks)
        for result in refused:
            group, position, score = result.split(":", 2)
            check = checks[int(group) - 1]
            cap = check.limits[int(position) - 1][1]
            counted = datetime.fromtimestamp(float(score), UTC)
            out[int(group) - 1] = cap_frees_at(cap, check.zone, counted).astimezone(at.tzinfo)
        return out

    def restore(self, entries: Iterable[Counted], ttl: int) -> int:
        """Count already-sent notifications again (each once, at its own time), in batches;
        returns how many entries were written."""
        written = 0
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            key = self.keys.cap(entry.recipient_id, entry.counter)
            pipe.zadd(key, {entry.member: float(_score(entry.at))}, nx=True)
            pipe.expire(key, ttl)
            written += 1
            if written % 5000 == 0:
                pipe.execute()
        pipe.execute()
        return written

    def ready(self) -> bool:
        """Whether the counters are known to be complete."""
        return bool(self.client.exists(self.keys.caps_ready))

    def mark_ready(self, at: datetime) -> None:
        self.client.set(self.keys.caps_ready, at.isoformat())

    def lock_rebuild(self, seconds: int) -> bool:
        """Take the right to rebuild the counters for `seconds`; False if another holds it."""
        return bool(self.client.set(self.keys.caps_rebuilding, "1", nx=True, ex=seconds))

    def unlock_rebuild(self) -> None:
        self.client.delete(self.keys.caps_rebuilding)

    def take(self, channel: str, count: int, per: int, want: int, at: datetime) -> int:
        """Take up to `want` sends from a channel's rate limit window; returns how many."""
        index = int(at.timestamp()) // per
        key = self.keys.rate(channel, per, index)
        return int(self._take(keys=[key], args=[count, want, per + 5]))

    def close(self) -> None:
        self.client.close()
