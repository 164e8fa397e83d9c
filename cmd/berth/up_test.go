package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
	"github.com/berthd/berth/store/etcd"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// berthBinary builds berth once per test binary (for tests that need it
// as a process: to kill it, or to run it as another user).
func berthBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "berth")
		cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proxyRig is berth up as a process with the shipped nginx template, a real
// nginx in front of it and an external store (a real etcd server in the
// test process), so that the records can be watched while the daemon is
// dead.
type proxyRig struct {
	t       *testing.T
	bin     string
	env     embeddedtest.Env
	st      *etcd.Store
	nginx   *testenv.Nginx
	config  string
	sock    string
	metrics string   // 127.0.0.1:port of /metrics and /healthz
	host    string   // the daemon's host name in the keys
	envs    []string // more of berth up's environment
	daemon  *exec.Cmd
	exited  chan struct{}
}

func newProxyRig(t *testing.T) *proxyRig {
	t.Helper()
	r := &proxyRig{t: t, bin: berthBinary(t), env: embeddedtest.NewEnv(t), nginx: testenv.NewNginx(t), host: "e2e-host"}
	storeDir := t.TempDir() // the daemon joins this server (the test holds the lock)
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.st = st
	dir := t.TempDir()
	r.sock = filepath.Join(dir, "berth.sock")
	mport, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	r.metrics = "127.0.0.1:" + strconv.Itoa(mport)
	_, self, _, _ := goruntime.Caller(0)
	tmpls := filepath.Join(filepath.Dir(self), "..", "..", "templates")
	n := r.nginx
	// nginx starts after the first render; until then there is nothing to
	// reload.
	reload := fmt.Sprintf("if [ -s %s/nginx.pid ]; then %s; fi", n.Dir, n.ReloadCommand())
	r.config = filepath.Join(dir, "berth.toml")
	conf := fmt.Sprintf(`[store]
url = "embedded://%s"

[daemon]
host = %q
state_dir = %q
socket = %q
docker_socket = %q
listen = %q
ttl = "3s"
drain = "1s"

[runtime]
bridge = %q
subnet = %q
cgroup_parent = %q

[[template]]
name = "nginx"
src = %q
includes = [%q]
dest = %q
prefixes = ["/berth/services/"]
check = %q
reload = %q
`, storeDir, r.host, r.env.StateDir, r.sock, filepath.Join(dir, "docker.sock"), r.metrics,
		r.env.Bridge, r.env.Subnet, r.env.CgroupParent,
		filepath.Join(tmpls, "nginx.conf.tmpl"), filepath.Join(tmpls, "nginx.tmpl"), n.Conf, n.CheckCommand(), reload)
	if err := os.WriteFile(r.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.cleanup)
	return r
}

// start runs berth up and waits until its API answers.
func (r *proxyRig) start() {
	r.t.Helper()
	cmd := exec.Command(r.bin, "up", "--config", r.config, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "BERTH_NGINX_LISTEN="+r.nginx.Addr, "BERTH_NGINX_GRPC_LISTEN=127.0.0.1:1")
	cmd.Env = append(cmd.Env, r.envs...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.daemon, r.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(r.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for api.NewClient(r.sock).Ping(context.Background()) != nil {
		select {
		case <-r.exited:
			r.t.Fatal("berth up exited at start")
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatal("berth up never answered on its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the daemon with sig and waits for it.
func (r *proxyRig) stop(sig syscall.Signal) {
	r.t.Helper()
	if r.daemon == nil {
		return
	}
	_ = r.daemon.Process.Signal(sig)
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		_ = r.daemon.Process.Kill()
		<-r.exited
		r.t.Errorf("berth up did not stop on %v", sig)
	}
	r.daemon = nil
}

func (r *proxyRig) cleanup() {
	if r.daemon == nil {
		r.start() // containers are removed through a daemon
	}
	c := api.NewClient(r.sock)
	cs, _ := c.List(context.Background())
	for _, ctr := range cs {
		if err := c.Remove(context.Background(), ctr.ID, runtime.Force()); err != nil {
			r.t.Errorf("cleanup: rm %s: %v", ctr.Name, err)
		}
	}
	r.stop(syscall.SIGTERM)
	if err := embeddedtest.RemoveBridge(r.env); err != nil {
		r.t.Errorf("remove bridge: %v", err)
	}
	embeddedtest.AssertClean(r.t, r.env)
}

// cli runs a berth command against the daemon.
func (r *proxyRig) cli(args ...string) string {
	r.t.Helper()
	args = append(args[:1:1], append([]string{"--host", r.sock}, args[1:]...)...)
	code, stdout, stderr := berthCLI(context.Background(), args...)
	if code != 0 {
		r.t.Fatalf("berth %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return strings.TrimSpace(stdout)
}

// answers collects the distinct answers nginx gives for host.
func (r *proxyRig) answers(host string) map[string]bool {
	seen := map[string]bool{}
	for range 8 {
		code, body, err := r.nginx.Get(host, "/")
		if err != nil {
			r.t.Fatal(err)
		}
		if code != http.StatusOK {
			seen[strconv.Itoa(code)] = true // nginx's own error page
			continue
		}
		seen[fmt.Sprintf("%d %s", code, strings.TrimSpace(body))] = true
	}
	return seen
}

// waitAnswers waits until nginx answers host with exactly want.
func (r *proxyRig) waitAnswers(host string, want ...string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := r.answers(host)
		ok := len(got) == len(want)
		for _, w := range want {
			ok = ok && got[w]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("nginx answers for %s: %v, want %v\n%s", host, got, want, r.nginx.ErrorLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// records lists the instance records of this host in the store.
func (r *proxyRig) records() []records.Instance {
	r.t.Helper()
	kvs, _, err := r.st.List(context.Background(), "/berth/services/")
	if err != nil {
		r.t.Fatal(err)
	}
	var out []records.Instance
	for _, kv := range kvs {
		var in records.Instance
		if err := json.Unmarshal(kv.Value, &in); err != nil {
			r.t.Fatalf("%s: %v", kv.Key, err)
		}
		if in.Host == r.host {
			out = append(out, in)
		}
	}
	return out
}

// metric reads one unlabelled-or-labelled series from /metrics (0 if
// absent).
func (r *proxyRig) metric(series string) float64 {
	r.t.Helper()
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			f, _ := strconv.ParseFloat(val, 64)
			return f
		}
	}
	return 0
}

// whoamiImage imports a one-layer image holding the whoami server.
func (r *proxyRig) whoamiImage() string {
	r.t.Helper()
	rootfs := filepath.Join(r.t.TempDir(), "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		r.t.Fatal(err)
	}
	testenv.BuildWhoami(r.t, rootfs)
	r.cli("import", rootfs, "whoami:e2e")
	return "whoami:e2e"
}

// TestUpProxy is the product end to end: berth up with the shipped nginx
// template in front of a real nginx; berth run with VIRTUAL_HOST → nginx
// routes to it; berth stop → out after the drain; a restarted daemon takes
// the records over without reloading nginx; a killed daemon's containers
// keep serving, its records expire after the TTL, and come back with it.
func TestUpProxy(t *testing.T) {
	r := newProxyRig(t)
	r.start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(r.nginx.Conf); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("berth up never rendered nginx.conf")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.nginx.Start(t)
	img := r.whoamiImage()
	host := "e2e.localhost"
	r.waitAnswers(host, "503")

	run := func(name string) {
		r.cli("run", "-d", "--name", name, "-e", "VIRTUAL_HOST="+host, "-e", "PORT=80", "-e", "WHOAMI_NAME="+name, img, "/whoami")
	}
	run("a")
	r.waitAnswers(host, "200 a")
	run("b")
	r.waitAnswers(host, "200 a", "200 b")

	// The same containers through the Docker-compatible socket.
	out, err := exec.Command("docker", "--host", "unix://"+filepath.Join(filepath.Dir(r.sock), "docker.sock"), "ps", "--format", "{{.Names}}").CombinedOutput()
	if err != nil || strings.Join(strings.Fields(string(out)), " ") != "b a" && strings.Join(strings.Fields(string(out)), " ") != "a b" {
		t.Errorf("docker ps through berth up's Docker socket: %v: %q", err, out)
	}

	t.Run("stop drains", func(t *testing.T) {
		r.cli("stop", "a")
		r.waitAnswers(host, "200 b")
		// Draining for 1s, then the records go.
		deadline := time.Now().Add(10 * time.Second)
		for len(r.records()) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("records after the drain: %+v", r.records())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	conf := func() (string, time.Time) {
		b, err := os.ReadFile(r.nginx.Conf)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(r.nginx.Conf)
		return string(b), fi.ModTime()
	}

	t.Run("restart takes over without a reload", func(t *testing.T) {
		before, mtime := conf()
		r.stop(syscall.SIGTERM)
		r.waitAnswers(host, "200 b") // the container serves on
		r.start()
		// Wait for the takeover: the record rewritten under the new lease.
		deadline := time.Now().Add(60 * time.Second)
		for r.metric(`berth_renders_total{outcome="unchanged",template="nginx"}`) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the restarted daemon never rendered")
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(4 * time.Second) // past the old lease's TTL
		if got := r.metric(`berth_renders_total{outcome="changed",template="nginx"}`); got != 0 {
			t.Errorf("the restarted daemon replaced nginx.conf %v times; want 0", got)
		}
		after, mtime2 := conf()
		if after != before || !mtime2.Equal(mtime) {
			t.Errorf("nginx.conf changed across the restart")
		}
		if n := len(r.records()); n != 1 {
			t.Errorf("%d records after the old lease's TTL, want 1", n)
		}
		r.waitAnswers(host, "200 b")
	})

	t.Run("SIGHUP reloads the templates", func(t *testing.T) {
		dir := t.TempDir()
		src, dest := filepath.Join(dir, "hosts.tmpl"), filepath.Join(dir, "hosts.txt")
		if err := os.WriteFile(src, []byte(`{{range $s, $is := .Services}}{{range $is}}{{.Name}} {{.Env.VIRTUAL_HOST}}{{"\n"}}{{end}}{{end}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		conf, err := os.ReadFile(r.config)
		if err != nil {
			t.Fatal(err)
		}
		extra := fmt.Sprintf("\n[[template]]\nname = \"hosts\"\nsrc = %q\ndest = %q\nprefixes = [\"/berth/services/\"]\n", src, dest)
		if err := os.WriteFile(r.config, append(conf, extra...), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(r.config, conf, 0o644)
		if err := r.daemon.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			if b, _ := os.ReadFile(dest); string(b) == "b "+host+"\n" {
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(dest)
				t.Fatalf("the template added by SIGHUP: %q", b)
			}
			time.Sleep(50 * time.Millisecond)
		}
		r.waitAnswers(host, "200 b") // the nginx template kept running
	})

	t.Run("killed daemon", func(t *testing.T) {
		r.stop(syscall.SIGKILL)
		r.waitAnswers(host, "200 b")
		deadline := time.Now().Add(15 * time.Second)
		for len(r.records()) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("records of a dead daemon still there after 15s (TTL 3s): %+v", r.records())
			}
			time.Sleep(100 * time.Millisecond)
		}
		r.waitAnswers(host, "200 b") // nobody re-rendered: nginx routes on
		r.start()
		deadline = time.Now().Add(15 * time.Second)
		for len(r.records()) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("records not restored by the returning daemon")
			}
			time.Sleep(50 * time.Millisecond)
		}
		r.waitAnswers(host, "200 b")
		if resp, err := http.Get("http://" + r.metrics + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz: %v %v", resp, err)
		}
	})
}

// TestDemo runs make demo's script as a new user would (without a
// terminal, so it ends by itself) and checks what it promises: nginx
// alternates between the two whoami containers, then only whoami-2
// answers, and everything is removed.
func TestDemo(t *testing.T) {
	env := embeddedtest.NewEnv(t) // a private bridge and subnet
	// The demo takes port and port+1: find a pair free now.
	port := 0
	for range 20 {
		p, err := freeLoopbackPort()
		if err != nil {
			t.Fatal(err)
		}
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			ln.Close()
			port = p
			break
		}
	}
	if port == 0 {
		t.Fatal("no pair of free loopback ports")
	}
	_, self, _, _ := goruntime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "..", "examples", "nginx-proxy", "run.sh")
	cmd := exec.CommandContext(t.Context(), script)
	cmd.Env = append(os.Environ(), "BERTH="+berthBinary(t), "DEMO_PORT="+strconv.Itoa(port),
		"DEMO_BRIDGE="+env.Bridge, "DEMO_SUBNET="+env.Subnet.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	text := string(out)
	section := func(from, to string) string {
		_, after, ok1 := strings.Cut(text, from)
		between, _, ok2 := strings.Cut(after, to)
		if !ok1 || !ok2 {
			t.Fatalf("demo output lacks the part from %q to %q:\n%s", from, to, text)
		}
		return between
	}
	routed := section("alternating", "Stop whoami-1")
	drained := section("Stop whoami-1", "The records behind")
	for _, want := range []struct{ in, what string }{
		{text, "no containers yet: HTTP 503"},
		{routed, "whoami-1\n"}, {routed, "whoami-2\n"}, {routed, "hello\n"},
		{text, "done: containers, bridge " + env.Bridge},
	} {
		if !strings.Contains(want.in, want.what) {
			t.Errorf("demo output lacks %q:\n%s", want.what, text)
		}
	}
	if _, curls, _ := strings.Cut(drained, "curl"); strings.Contains(curls, "whoami-1") {
		t.Errorf("whoami-1 still answered after its stop:\n%s", drained)
	}
	if left := embeddedtest.Leftovers(env); len(left) > 0 {
		t.Errorf("the demo left behind: %v", left)
	}
}

// TestUpDockerRuntime: berth up following a real Docker Engine registers
// its containers exactly as it does its own, and refuses to stop or remove
// containers it does not own.
func TestUpDockerRuntime(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	netName := testenv.DockerNetwork(t, img)
	storeDir := t.TempDir()
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tag := img.Tag()
	host := "dk-" + tag
	dir := t.TempDir()
	args := []string{"up", "--runtime", "docker", "--store", "embedded://" + storeDir,
		"--hostname", host, "--state-dir", dir, "--socket", filepath.Join(dir, "berth.sock"), "--log-level", "warn"}

	if code, _, stderr := berthCLI(t.Context(), append(args, "--rm")...); code != exitUsage || !strings.Contains(stderr, "embedded runtime only") {
		t.Errorf("berth up --runtime docker --rm: exit %d, %s", code, stderr)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		code, _, stderr := berthCLI(ctx, args...)
		if code != 0 {
			t.Errorf("berth up: exit %d: %s", code, stderr)
		}
		done <- code
	}()
	defer func() { cancel(); <-done }()

	out, err := exec.Command("docker", "run", "-d", "--label", img.Label, "--network", netName,
		"-e", "VIRTUAL_HOST=dk.localhost", "-e", "VIRTUAL_PORT=8080", "--label", "berth.service=dk", img.Ref).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	key := records.ServiceKey("/berth", "dk", host, id)
	var in records.Instance
	deadline := time.Now().Add(30 * time.Second)
	for {
		kv, err := st.Get(t.Context(), key)
		if err == nil {
			if err := json.Unmarshal(kv.Value, &in); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never registered", key)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if in.IP == "" || in.Port != 8080 || in.Env["VIRTUAL_HOST"] != "dk.localhost" {
		t.Errorf("record: %+v", in)
	}
	if out, err := exec.Command("docker", "stop", "-t", "1", id).CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v: %s", err, out)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		if _, err := st.Get(t.Context(), key); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still registered after docker stop", key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUpStopSignals: berth up --rm as a process, as make demo runs it. One
// Ctrl-C in a terminal (SIGINT to the process group) followed at once by a
// wrapper script's SIGTERM is one stop request: berth waits for its
// container's graceful stop and removes everything. A second signal later
// than a second cuts the wait short, and still nothing is left behind.
func TestUpStopSignals(t *testing.T) {
	bin := berthBinary(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.BuildWhoami(t, rootfs)
	for _, tc := range []struct {
		name   string
		linger string        // how long the container serves on after SIGTERM
		second time.Duration // when the SIGTERM follows the SIGINT
		cut    bool          // the wait is cut short
	}{
		{"ctrl-c and a script's SIGTERM", "2s", 50 * time.Millisecond, false},
		{"second signal later", "1h", 1500 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := embeddedtest.NewEnv(t)
			sock := filepath.Join(t.TempDir(), "berth.sock")
			cmd := exec.Command(bin, "up", "--rm", "--runtime", "embedded", "--state-dir", env.StateDir, "--socket", sock,
				"--bridge", env.Bridge, "--subnet", env.Subnet.String(), "--cgroup-parent", env.CgroupParent,
				"--stop-timeout", "1m", "--log-level", "info")
			var logb testenv.SyncBuffer
			cmd.Stdout, cmd.Stderr = &logb, &logb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				select {
				case <-exited:
				default:
					_ = cmd.Process.Kill()
					<-exited
				}
				_ = embeddedtest.RemoveBridge(env)
				embeddedtest.AssertClean(t, env)
			})
			deadline := time.Now().Add(30 * time.Second)
			for api.NewClient(sock).Ping(context.Background()) != nil {
				if time.Now().After(deadline) {
					t.Fatalf("berth up never answered:\n%s", logb.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			cli := func(args ...string) {
				t.Helper()
				args = append(args[:1:1], append([]string{"--host", sock}, args[1:]...)...)
				if code, _, stderr := berthCLI(context.Background(), args...); code != 0 {
					t.Fatalf("berth %s: exit %d: %s", strings.Join(args, " "), code, stderr)
				}
			}
			cli("import", rootfs, "whoami:signals")
			cli("run", "-d", "--name", "lingering", "-e", "WHOAMI_LINGER="+tc.linger, "whoami:signals", "/whoami")
			// Wait until whoami handles SIGTERM: as a container's pid 1 it
			// ignores one that arrives before its handler is installed, and
			// the stop would then wait the whole --stop-timeout.
			for {
				_, stdout, stderr := berthCLI(context.Background(), "logs", "--host", sock, "lingering")
				if strings.Contains(stdout+stderr, "listening on") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("whoami never started listening:\n%s", logb.String())
				}
				time.Sleep(20 * time.Millisecond)
			}

			signalled := time.Now()
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.second)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
				if waitErr != nil {
					t.Errorf("berth up: %v\n%s", waitErr, logb.String())
				}
			case <-time.After(45 * time.Second):
				t.Fatalf("berth up did not stop:\n%s", logb.String())
			}
			log := logb.String()
			if got := strings.Contains(log, "second stop signal"); got != tc.cut {
				t.Errorf("wait cut short: %v, want %v:\n%s", got, tc.cut, log)
			}
			// The container serves on for its linger after SIGTERM: a stop
			// that waited for it took at least that long.
			if took := time.Since(signalled); !tc.cut && took < 2*time.Second {
				t.Errorf("berth up stopped %s after the signals, before its container's graceful stop (2s):\n%s", took, log)
			}
			if left := embeddedtest.Leftovers(env); len(left) > 0 {
				t.Errorf("berth up --rm left behind: %v\n%s", left, log)
			}
		})
	}
}
