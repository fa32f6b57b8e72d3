#!/usr/bin/env bash
# Installs the Debian packages that the test suites run as real peers (Chromium, OpenSSH,
# redis-server, nats-server, wrk, ...) when any of them is missing, so `npm test` passes on a fresh machine.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# nats-server installs to /usr/sbin, which is not on PATH for non-root users (test/helpers/nats.ts spawns it from there).
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v gunicorn >/dev/null 2>&1 || need+=(gunicorn)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need+=(python3-prometheus-client)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages the tests use: ${need[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
  echo "missing Debian packages: ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
