package cluster_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRoutingAcrossHosts: three hosts form a cluster; host 0 renders the
// shipped nginx templates for a real nginx; host 1 runs a real container
// (embedded runtime) publishing port 8080. Host 0's nginx serves it over
// real HTTP through the namespaces, at host 1's advertise address. After a
// SIGKILL of host 1's daemon its records leave host 0's nginx.conf with
// its lease; when the daemon comes back it takes its container over and
// the route returns.
func TestRoutingAcrossHosts(t *testing.T) {
	needTools(t, "nginx", "curl", "iptables")
	h := newHosts(t, 3)
	const ttl = 3 * time.Second
	name := func(i int) string { return fmt.Sprintf("host%d", i) }
	common := func(i int, extra ...string) []string {
		return append([]string{"--state-dir", h.state(i), "--hostname", name(i), "--advertise", hostIP(i),
			"--ttl", ttl.String(), "--log-level", "info"}, extra...)
	}

	// Host 0: the private nginx recipe of the README, listening on host 0's
	// loopback.
	ngx, conf, dest := h.nginxConfig(0)
	h.start(0, "berth up", []string{"BERTH_NGINX_LISTEN=127.0.0.1:8000"}, h.bin,
		append([]string{"up"}, common(0, "--runtime", "none", "--config", conf, "--cluster-init")...)...)
	h.started(0, 1, 30*time.Second)
	token := strings.TrimSpace(h.mustBerth(0, "cluster", "token", "--state-dir", h.state(0)))
	join := []string{"--join", "https://" + hostIP(0) + ":2380", "--token", token}

	// Host 1 runs containers; host 2 is a member without a runtime (so
	// that two of three members remain when host 1 dies).
	sock := filepath.Join(h.state(1), "berth.sock")
	host1 := common(1, "--runtime", "embedded", "--socket", sock, "--cgroup-parent", h.cgroupParent(1), "--rm")
	p1 := h.up(1, append(host1, join...)...)
	h.started(0, 2, 30*time.Second)
	h.up(2, append(common(2, "--runtime", "none"), join...)...)
	h.started(0, 3, 30*time.Second)

	h.startNginx(0, ngx, dest)

	h.importWhoami(1, sock, buildWhoami(t))
	id := h.runWhoami(1, sock, "w1", "whoami.test", 8080)
	curl := func() (bool, string) {
		out, err := h.run(0, "curl", "-s", "-m", "2", "-H", "Host: whoami.test", "http://127.0.0.1:8000/")
		return err == nil && strings.Contains(out, id[:12]), out
	}
	took := eventually(t, 15*time.Second, "host 0's nginx serves host 1's container", curl)
	t.Logf("host 0's nginx served host 1's container %s after berth run", took.Round(time.Millisecond))
	if b, _ := os.ReadFile(dest); !strings.Contains(string(b), "server 10.231.0.2:8080;") {
		t.Errorf("nginx.conf has no upstream at host 1's advertise address:\n%s", b)
	}

	// SIGKILL host 1's daemon: its records go with its lease.
	p1.kill(t)
	gone := eventually(t, ttl+5*time.Second, "host 1's instance leaves host 0's nginx.conf", func() (bool, string) {
		b, _ := os.ReadFile(dest)
		return !strings.Contains(string(b), "10.231.0.2:8080"), string(b)
	})
	t.Logf("host 1's instance left host 0's nginx.conf %s after its daemon's SIGKILL (TTL %s)", gone.Round(time.Millisecond), ttl)

	// The daemon comes back: it takes its container over, the route returns.
	h.up(1, host1...)
	took = eventually(t, 30*time.Second, "host 0's nginx serves host 1's container again", curl)
	t.Logf("route back %s after host 1's daemon restarted", took.Round(time.Millisecond))

	// Partition host 1 (drop its traffic inside its namespace, loopback
	// aside) for longer than the TTL: its instance leaves host 0's config;
	// after the heal host 1 registers again and the route returns.
	h.partition(1, true)
	gone = eventually(t, ttl+10*time.Second, "the partitioned host 1's instance leaves host 0's nginx.conf", func() (bool, string) {
		b, _ := os.ReadFile(dest)
		return !strings.Contains(string(b), "10.231.0.2:8080"), string(b)
	})
	t.Logf("partitioned host 1's instance left host 0's nginx.conf after %s (TTL %s)", gone.Round(time.Millisecond), ttl)
	time.Sleep(ttl) // partitioned for longer than the TTL in all
	h.partition(1, false)
	took = eventually(t, 30*time.Second, "after the heal host 0's nginx serves host 1's container again", curl)
	t.Logf("after the partition healed, host 0's nginx served host 1's container again within %s", took.Round(time.Millisecond))
}

// nginxConfig writes, for host i, the private nginx recipe of the README
// (the shipped templates, nginx checked and reloaded with its own prefix
// ngx) into a berth.toml conf that renders dest. Start the daemon with
// BERTH_NGINX_LISTEN set, then startNginx.
func (h *hosts) nginxConfig(i int) (ngx, conf, dest string) {
	h.t.Helper()
	ngx = filepath.Join(h.state(i), "nginx")
	if err := os.MkdirAll(filepath.Join(ngx, "tmp"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	h.mustBerth(i, "templates", "save", "nginx.conf.tmpl", "nginx.tmpl", "--dir", h.state(i))
	conf = filepath.Join(h.state(i), "berth.toml")
	dest = filepath.Join(ngx, "nginx.conf")
	toml := fmt.Sprintf(`[[template]]
name = "nginx"
src = "nginx.conf.tmpl"
includes = ["nginx.tmpl"]
dest = %q
check = "nginx -t -q -p %s/ -c {{.src}}"
reload = "if [ -s %s/nginx.pid ]; then kill -HUP $(cat %s/nginx.pid); fi"
`, dest, ngx, ngx, ngx)
	if err := os.WriteFile(conf, []byte(toml), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return ngx, conf, dest
}

// startNginx starts nginx on host i once its daemon rendered dest.
func (h *hosts) startNginx(i int, ngx, dest string) {
	h.t.Helper()
	eventually(h.t, 10*time.Second, fmt.Sprintf("host %d renders nginx.conf", i), func() (bool, string) {
		_, err := os.Stat(dest)
		return err == nil, fmt.Sprint(err)
	})
	h.start(i, "nginx", nil, "nginx", "-p", ngx+"/", "-c", "nginx.conf")
}

// buildWhoami builds the static whoami example into a directory that
// berth import takes as an image.
func buildWhoami(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "whoami")
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "whoami"), "./examples/whoami")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build whoami: %v\n%s", err, out)
	}
	return dir
}

// importWhoami imports the image dir (buildWhoami's) as whoami on host i,
// its daemon's API at sock.
func (h *hosts) importWhoami(i int, sock, dir string) {
	h.t.Helper()
	h.apiUp(i, sock)
	h.mustBerth(i, "-H", sock, "import", dir, "whoami")
}

// apiUp waits until host i's daemon answers on its API socket sock.
func (h *hosts) apiUp(i int, sock string) {
	h.t.Helper()
	eventually(h.t, 30*time.Second, fmt.Sprintf("host %d's API answers", i), func() (bool, string) {
		out, err := h.berth(i, "-H", sock, "ps")
		return err == nil, out
	})
}

// runWhoami runs a whoami container name for vhost on host i (the image
// imported), published at hostPort; it returns the container ID.
func (h *hosts) runWhoami(i int, sock, name, vhost string, hostPort int) string {
	h.t.Helper()
	h.apiUp(i, sock)
	id := strings.TrimSpace(h.mustBerth(i, "-H", sock, "run", "-d", "--name", name, "-p", fmt.Sprintf("%d:80", hostPort),
		"-e", "VIRTUAL_HOST="+vhost, "-e", "PORT=80", "whoami", "/whoami"))
	if len(id) < 12 {
		h.t.Fatalf("host %d: berth run printed %q", i, id)
	}
	return id
}
