#!/usr/bin/env bash
# berth's quick start: berth up runs containers and keeps an nginx reverse
# proxy in front of them, routing by host name (VIRTUAL_HOST), as
# nginx-proxy does with docker-gen — in one binary, with no Docker.
#
# Everything lives in a temporary directory, on a bridge of its own, with
# nginx on 127.0.0.1:8080 (DEMO_PORT). Ctrl-C (or the end, when stdin is
# not a terminal) stops and removes all of it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
berth=${BERTH:-$repo/bin/berth}
port=${DEMO_PORT:-8080}
metrics=$((port + 1))
bridge=${DEMO_BRIDGE:-berthdemo0}
subnet=${DEMO_SUBNET:-10.214.0.0/24}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "containers need root: run it as root (sudo make demo)"
[ -x "$berth" ] || die "$berth not found: run make build (make demo does)"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || die "nginx not found: scripts/install-deps installs it"
for p in "$port" "$metrics"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "127.0.0.1:$p is in use: set DEMO_PORT to a free port (the demo takes it and the next one)"
  fi
done

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
berth_pid="" nginx_pid=""
# What of berth's is on the host: everything carrying the ownership mark
# of the demo's daemon (read from its bridge once it is up), and the
# bridge. After a clean stop: nothing.
mark=""
host_state() {
  [ -n "$mark" ] || return 0
  ip netns list 2>/dev/null | awk -v m="berth-$mark-" 'index($1, m) == 1 {print "netns " $1}'
  ip -o link show 2>/dev/null | awk -F': ' -v br="$bridge" -v m=" alias berth $mark" \
    '{name = $2; sub(/@.*/, "", name); if (name == br || index($0, m)) print "link " name}'
  find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d -path "*/$mark*" 2>/dev/null | sed 's/^/cgroup /'
}
# note: cleanup's output. It goes to stderr and never fails: after a Ctrl-C
# under `make demo | tee log`, tee is gone and stdout is a broken pipe.
note() { printf '%s\n' "$*" >&2 || true; }
# stop PID SIGNAL SECONDS NAME: signal a process we started and wait for
# it, at most SECONDS, then kill it; returns its exit status.
stop() {
  kill -"$2" "$1" 2>/dev/null || return 0
  for _ in $(seq $(($3 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -KILL "$1" 2>/dev/null; then note "$4 did not stop within $3s: killed"; fi
  wait "$1" 2>/dev/null
}
cleanup() {
  set +e
  trap '' PIPE TERM   # a gone reader of stdout must not end the cleanup
  trap - EXIT
  # berth runs in a session of its own (setsid), so the terminal's Ctrl-C
  # reached only this script, and berth gets exactly one SIGTERM: a full
  # clean stop. A second Ctrl-C is passed on: berth's "second signal",
  # which stops without waiting for the containers.
  trap 'note "second interrupt: berth stops without waiting"; [ -z "$berth_pid" ] || kill -INT "$berth_pid" 2>/dev/null' INT
  note ""
  note "== Cleaning up"
  if [ -n "$nginx_pid" ]; then stop "$nginx_pid" QUIT 5 nginx; fi
  # berth up --rm: stops and removes the containers and the bridge.
  if [ -n "$berth_pid" ]; then
    stop "$berth_pid" TERM 60 berth || {
      note "berth exited with status $?; its log ends:"
      tail -n 20 "$work/berth.log" >&2 2>/dev/null || true
    }
  fi
  left=$(host_state)
  if grep -q " $work/" /proc/self/mountinfo; then
    note "mounts are left under $work; not removing it:"
    grep " $work/" /proc/self/mountinfo | awk '{print "  " $5}' >&2 || true
  else
    rm -rf "$work"
  fi
  if [ -n "$left" ]; then
    note "left on the host:"; note "$left"
  else
    note "done: containers, bridge $bridge, the containers' netns and veths, nginx and $work are gone"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/nginx/tmp" "$work/rootfs"
export BERTH_HOST=$work/berth.sock     # the CLI talks to this daemon
export BERTH_NGINX_LISTEN=127.0.0.1:$port

say "Build the demo image: a static Go web server that says who it is"
run env CGO_ENABLED=0 go build -C "$repo" -trimpath -o "$work/rootfs/whoami" ./examples/whoami
run "$berth" version >/dev/null

cat >"$work/berth.toml" <<EOF
# berth up's configuration for this demo (see the README for every key).
[daemon]
state_dir = "$work/state"        # containers, images, the embedded store
socket = "$work/berth.sock"      # berth run, ps, stop ... talk to it
listen = "127.0.0.1:$metrics"    # /metrics and /healthz
drain = "2s"                     # a stopped container leaves nginx first

[runtime]
bridge = "$bridge"
subnet = "$subnet"

# The shipped nginx template: a whole nginx.conf routing by VIRTUAL_HOST.
[[template]]
name = "nginx"
src = "$repo/templates/nginx.conf.tmpl"
includes = ["$repo/templates/nginx.tmpl"]
dest = "$work/nginx/nginx.conf"
prefixes = ["/berth/services/"]
check = "$nginx -t -q -p $work/nginx/ -c {{.src}}"
reload = "if [ -s $work/nginx/nginx.pid ]; then kill -HUP \$(cat $work/nginx/nginx.pid); fi"
EOF

say "Start berth up (log: $work/berth.log)"
printf '$ %s\n' "berth up --config berth.toml --rm &"
# In its own session: the terminal's Ctrl-C is for this script, which
# then stops berth with one signal (see cleanup).
setsid "$berth" up --config "$work/berth.toml" --rm >"$work/berth.log" 2>&1 </dev/null &
berth_pid=$!
ready=""
for _ in $(seq 300); do
  if [ -f "$work/nginx/nginx.conf" ] && "$berth" ps >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$berth_pid" 2>/dev/null || { cat "$work/berth.log"; die "berth up exited"; }
  sleep 0.1
done
[ -n "$ready" ] || { cat "$work/berth.log"; die "berth up did not get ready within 30s"; }
mark=$(ip -d link show "$bridge" 2>/dev/null | awk '$1 == "alias" && $2 == "berth" {print $3}')

say "Start nginx on 127.0.0.1:$port with the configuration berth rendered"
printf '$ %s\n' "nginx -p $work/nginx/ -c $work/nginx/nginx.conf &"
setsid "$nginx" -p "$work/nginx/" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" </dev/null &
nginx_pid=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/nginx/error.log"; die "nginx exited"; }
  sleep 0.1
done
run curl -s -o /dev/null -w "no containers yet: HTTP %{http_code}\n" -H "Host: whoami.localhost" "http://127.0.0.1:$port/"

say "Import the image and run two instances of whoami.localhost and one of hello.localhost"
run "$berth" import "$work/rootfs" whoami:demo
for name in whoami-1 whoami-2; do
  run "$berth" run -d --name "$name" -e VIRTUAL_HOST=whoami.localhost -e PORT=80 -e WHOAMI_NAME="$name" whoami:demo /whoami
done
run "$berth" run -d --name hello -e VIRTUAL_HOST=hello.localhost -e VIRTUAL_PORT=8000 -e PORT=8000 -e WHOAMI_NAME=hello whoami:demo /whoami
run "$berth" ps
sleep 0.5

say "nginx routes by host name, alternating between the two whoami containers"
for _ in 1 2 3 4; do run curl -s -H "Host: whoami.localhost" "http://127.0.0.1:$port/" || true; done
run curl -s -H "Host: hello.localhost" "http://127.0.0.1:$port/" || true

say "Stop whoami-1: it drains out of nginx, whoami-2 takes every request"
run "$berth" stop whoami-1
sleep 0.5
for _ in 1 2 3; do run curl -s -H "Host: whoami.localhost" "http://127.0.0.1:$port/" || true; done

say "The records behind it, in the embedded store"
run "$berth" kv ls --state-dir "$work/state" /berth/services/

say "Try next (in another terminal)"
cat <<EOF
  export BERTH_HOST=$work/berth.sock
  $berth ps -a
  $berth run -d --name whoami-3 -e VIRTUAL_HOST=whoami.localhost -e PORT=80 -e WHOAMI_NAME=whoami-3 whoami:demo /whoami
  curl -H 'Host: whoami.localhost' http://127.0.0.1:$port/
  $berth stop whoami-2
  $berth logs whoami-2
  cat $work/nginx/nginx.conf
  curl -s http://127.0.0.1:$metrics/metrics | grep ^berth_
EOF
if [ -t 0 ]; then
  say "Press Ctrl-C to stop and remove everything"
  wait "$berth_pid"
fi
