#!/usr/bin/env bash
# berth demo: an embedded store, a few service records, a template rendered
# once, then kept current by `berth watch` while records come and go.
# Everything lives in a temporary directory and is removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
berth=${BERTH:-$here/../../bin/berth}
work=$(mktemp -d)
watch_pid=""
store_pid=""
cleanup() {
  for pid in $watch_pid $store_pid; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
export BERTH_STATE_DIR=$work/state   # the embedded store lives here
record() { # service host id ip port
  printf '{"id":"%s","name":"%s","service":"%s","host":"%s","ip":"%s","port":%s,"state":"running","health":"none"}' \
    "$3" "$3" "$1" "$2" "$4" "$5"
}

say "Start the embedded store: berth up would serve it; here a kv watch does, logging every change"
"$berth" kv watch --store-create /berth/ >"$work/changes.log" 2>&1 &
store_pid=$!
for _ in $(seq 100); do "$berth" kv ls / >/dev/null 2>&1 && break; sleep 0.1; done
run "$berth" kv ls /

say "Register three instances of two services in the embedded store"
run "$berth" kv put /berth/services/web/host1/web-1 "$(record web host1 web-1 10.88.0.11 8080)"
run "$berth" kv put /berth/services/web/host2/web-2 "$(record web host2 web-2 10.88.0.12 8080)"
run "$berth" kv put /berth/services/api/host1/api-1 "$(record api host1 api-1 10.88.0.21 9000)"
run "$berth" kv ls /berth/services/

say "Render the upstreams template once"
run "$berth" render --template "$here/upstreams.tmpl:$work/upstreams.conf"
cat "$work/upstreams.conf"

say "Keep it current with berth watch (the sidecar), then change the records"
"$berth" watch --template "$here/upstreams.tmpl:$work/upstreams.conf" --log-level warn &
watch_pid=$!
sleep 1
run "$berth" kv put /berth/services/web/host3/web-3 "$(record web host3 web-3 10.88.0.13 8080)"
run "$berth" kv rm /berth/services/web/host1/web-1
sleep 1
cat "$work/upstreams.conf"

say "Stop the sidecar; preview the next change as a diff, writing nothing"
kill "$watch_pid"; wait "$watch_pid" 2>/dev/null || true; watch_pid=""
run "$berth" kv rm --prefix /berth/services/api/
run "$berth" render --dry-run --template "$here/upstreams.tmpl:$work/upstreams.conf"

say "Every change the store saw"
cat "$work/changes.log"

say "Done. Try next"
cat <<'TXT'
  berth kv watch /berth/services/        # one line per change, until Ctrl-C
  berth render --help                    # one-shot rendering: confd and docker-gen dialects too
  berth watch --config berth.toml        # the sidecar, against etcd://... or consul://... with --store
TXT
