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

# ARGV: the sentinel key, the score to count at, the prefix of the cap keys
# (`<prefix><recipient id>:<counter>`); the shapes, each a line of its counters, each
# `<counter>,<lowest score in its window ('(' for exclusive)>,<limit>,<TTL of the key>,
# <score below which the key's entries are in no window any more>` separated by spaces;
# the members (notification ids), one a line; then the groups, one a line:
# `<shape> <member> <recipient id>` (1-based). Each group is admitted — its member added to
# every counter that lacks it — only if every counter that lacks it is under its limit (a
# counter holding fewer entries than its limit is, without counting its window). Returns
# one entry per group refused, '<group>:<position of the full counter>:<score of the
# entry whose leaving frees it>' (1-based; most groups are admitted and say nothing); or
# {'lost'} when the sentinel is missing. A chunk's recipients share a few shapes, so a
# thousand groups travel as a few short strings; the counters' database is Tidings' own,
# so the keys need not be declared in KEYS. (Ids and counter names have no spaces,
# commas or newlines: `engine.schemas.common.Key`.)
CHECK_AND_COUNT = """
if redis.call('EXISTS', ARGV[1]) == 0 then return {'lost'} end
local score, prefix = ARGV[2], ARGV[3]
local shapes = {}
for line in string.gmatch(ARGV[4], '([^\\n]*)\\n') do
  local shape = {}
  for name, low, limit, ttl, prune in string.gmatch(line, '([^ ,]+),([^,]+),(%d+),(%d+),([^ ]+)') do
    shape[#shape + 1] = {name, low, tonumber(limit), tonumber(ttl), prune}
  end
  shapes[#shapes + 1] = shape
end
local members = {}
for member in string.gmatch(ARGV[5], '[^\\n]+') do members[#members + 1] = member end
local results, keys, cards = {}, {}, {}
local g = 0
for s, m, rid in string.gmatch(ARGV[6], '(%d+) (%d+) ([^\\n]+)') do
  g = g + 1
  local shape, member, full = shapes[tonumber(s)], members[tonumber(m)], nil
  for i, c in ipairs(shape) do
    local key = prefix .. rid .. ':' .. c[1]
    -- An empty counter (most, in a broadcast) is under its limit and lacks the member.
    local card = redis.call('ZCARD', key)
    keys[i], cards[i] = key, card
    if card >= c[3] and not redis.call('ZSCORE', key, member) then
      local count = redis.call('ZCOUNT', key, c[2], '+inf')
      if count >= c[3] then
        local entry = redis.call(
          'ZRANGEBYSCORE', key, c[2], '+inf', 'WITHSCORES', 'LIMIT', count - c[3], 1)
        full = i .. ':' .. entry[2]
        break
      end
    end
  end
  if full then
    results[#results + 1] = g .. ':' .. full
  else
    for i, c in ipairs(shape) do
      local key = keys[i]
      redis.call('ZADD', key, 'NX', score, member)
      if cards[i] == 0 then
        redis.call('EXPIRE', key, c[4])
      else
        -- Entries in no window any more go once they could count against the limit.
        if cards[i] >= c[3] then redis.call('ZREMRANGEBYSCORE', key, '-inf', c[5]) end
        if redis.call('TTL', key) < c[4] then redis.call('EXPIRE', key, c[4]) end
      end
    end
  end
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


def _shape(check: CapCheck, at: datetime) -> str:
    """A check's counters as the script reads them (a line of `CHECK_AND_COUNT`'s shapes)."""
    windows = [cap_window(cap, check.zone, at) for _, cap in check.limits]
    oldest: dict[str, datetime] = {}
    longest: dict[str, int] = defaultdict(int)
    for (name, cap), (since, _) in zip(check.limits, windows, strict=True):
        oldest[name] = min(since, oldest.get(name, since))
        longest[name] = max(longest[name], _ttl(cap))
    return " ".join(
        f"{name},{'' if inclusive else '('}{_score(since)},{cap.count},{longest[name]},"
        f"({_score(oldest[name])}"
        for (name, cap), (since, inclusive) in zip(check.limits, windows, strict=True)
    )


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
        # Checks that share their limits and zone (a chunk's recipients alike) share a
        # shape; the limits stay alive for the call, so no identity is reused.
        shapes: dict[tuple[int, str], str] = {}
        lines: list[str] = []
        members: dict[str, str] = {}
        groups: list[str] = []
        for check in checks:
            shape = shapes.get((id(check.limits), check.zone))
            if shape is None:
                shape = shapes[(id(check.limits), check.zone)] = str(len(shapes) + 1)
                lines.append(_shape(check, at))
            member = members.get(check.member)
            if member is None:
                member = members[check.member] = str(len(members) + 1)
            groups.append(f"{shape} {member} {check.recipient_id}")
        args = [
            self.keys.caps_ready,
            _score(at),
            self.keys.cap_prefix,
            "".join(line + "\n" for line in lines),
            "\n".join(members),
            "\n".join(groups),
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
