#!/usr/bin/env bash
# Shared setup for scripts/up and scripts/test: a virtual environment with Tidings
# installed, and the local services it needs answering. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt() {  # install Debian packages that are missing
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}

venv() {  # venv [dev]: the virtual environment, with dev tools when asked
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade "pip>=25.1"
  if [ "${1:-}" = dev ]; then
    "$VENV/bin/python" -m pip install -q -e . --group dev
  else
    "$VENV/bin/python" -m pip install -q -e .
  fi
}

redis_up() {  # a local Redis without persistence, unless one answers already
  if ! command -v redis-server >/dev/null; then need_apt redis-server redis-tools; fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    mkdir -p /tmp/tidings-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/tidings-redis --logfile /tmp/tidings-redis/redis.log
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

postgres_up() {  # the local PostgreSQL cluster, for the tests that are about PostgreSQL
  if ! command -v pg_ctlcluster >/dev/null; then need_apt postgresql; fi
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.1; done
  fi
}

rabbitmq_up() {  # a local RabbitMQ, for the tests that run the queues on RabbitMQ
  if ! command -v rabbitmq-server >/dev/null; then need_apt rabbitmq-server; fi
  if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    rabbitmq-server -detached
    for _ in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 0.5; done
  fi
}

browser() {  # Debian's Chromium for the page tests (Playwright drives it, never downloads one),
  # and fonts for Chinese text and the 👍 / 😕 / 👎 emoji, so screenshots show them
  need_apt chromium fonts-noto-cjk fonts-noto-color-emoji
}
