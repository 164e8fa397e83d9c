#!/bin/sh
# sandbox.sh T REPO SYSTEM_NGINX: runs as PID 1 of private mount, network and
# pid namespaces (unshare --mount --net --pid --fork --mount-proc), started by
# readme_test.go. It gives the recipe T/recipe.sh the paths a fresh Debian
# machine has (/etc, /var, /run, /tmp, /sys/fs/cgroup), as private copies:
# whatever the recipe writes, mounts, starts or listens on goes away with the
# namespaces. T holds the test's files: bin/ (berth, berth-init), recipe.sh,
# state/ (bound on /var/lib/berth), ov/ (the overlays' upper layers) and
# cgroups (the directory the test made for this run in each host cgroup
# hierarchy).
set -eu
T=$1 REPO=$2 SYSTEM_NGINX=$3

ip link set lo up
# /run: a fresh tmpfs; T stays reachable at /run/t once /tmp is covered.
mount -t tmpfs -o mode=0755 readme-run /run
mkdir /run/t /run/cg
mount --bind "$T" /run/t
T=/run/t
# The checkout too: a fresh clone under /tmp stays reachable.
mkdir /run/repo
mount --bind "$REPO" /run/repo
REPO=/run/repo
mount -t tmpfs -o mode=1777 readme-tmp /tmp
# The cgroup directories the test made (T/cgroups: "mount NAME DIR",
# "link NAME TARGET" or "root DIR" lines), bound before /sys is remounted.
while read -r kind name dir; do
  case $kind in
  mount) mkdir "/run/cg/$name"; mount --bind "$dir" "/run/cg/$name" ;;
  root) mkdir /run/cg/.root; mount --bind "$name" /run/cg/.root ;;
  esac
done <"$T/cgroups"
# /etc and /var: writable overlays of the host's.
for d in etc var; do
  mkdir -p "$T/ov/$d/upper" "$T/ov/$d/work"
  mount -t overlay "readme-$d" -o "lowerdir=/$d,upperdir=$T/ov/$d/upper,workdir=$T/ov/$d/work" "/$d"
done
# The state dir (container root filesystems are overlays: not on an overlay).
mkdir -p /var/lib/berth
mount --bind "$T/state" /var/lib/berth
# sysfs of this network namespace, and cgroups below the test's directories.
mount -t sysfs readme-sys /sys
if [ -d /run/cg/.root ]; then
  mount --bind /run/cg/.root /sys/fs/cgroup
else
  mount -t tmpfs -o mode=0755 readme-cgroup /sys/fs/cgroup
  while read -r kind name dir; do
    case $kind in
    mount) mkdir "/sys/fs/cgroup/$name"; mount --bind "/run/cg/$name" "/sys/fs/cgroup/$name" ;;
    link) ln -s "$dir" "/sys/fs/cgroup/$name" ;;
    esac
  done <"$T/cgroups"
fi

export PATH="$T/bin:$PATH"
if [ "$SYSTEM_NGINX" = 1 ]; then
  # Debian's nginx as the system service it is after apt-get install nginx.
  nginx
fi
status=0
(cd "$REPO" && exec sh "$T/recipe.sh") || status=$?

# Stop what the recipe left running: its containers through the daemon,
# the system nginx, then every other process of this pid namespace (all
# of them started here), by PID: TERM, then KILL after 30s.
echo "--- sandbox: cleaning up (recipe exit status $status)"
berth ps -aq 2>/dev/null | xargs -r berth rm -f || true
if [ "$SYSTEM_NGINX" = 1 ] && [ -s /run/nginx.pid ]; then
  nginx -s quit || true
fi
others() {
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = 1 ] || echo "$p"
  done
}
for sig in TERM KILL; do
  for _ in $(seq 300); do
    pids=""
    for p in $(others); do
      [ ! -d "/proc/$p" ] || pids="$pids $p"  # the $(...) shell is gone
    done
    [ -n "$pids" ] || break
    kill -"$sig" $pids 2>/dev/null || true
    sleep 0.1
  done
done
exit $status
