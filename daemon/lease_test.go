package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
)

// TestStoreStallLeaseLost is issue #12's trial: berth up following a real
// Docker Engine, its records on an external etcd server, which is frozen
// (SIGSTOP) for longer than the health threshold plus the lease's TTL.
// /healthz must fail within the threshold; after the thaw the server
// revokes the expired lease, and the registrar must write the records
// again before the template renders the gap: every output the template
// ever swapped in (its reload command logs each) and every poll of the
// file must show the one instance, never zero.
func TestStoreStallLeaseLost(t *testing.T) {
	const (
		threshold = 3 * time.Second
		ttl       = 2 * time.Second
	)
	img := testenv.BuildDockerImage(t)
	netName := testenv.DockerNetwork(t, img)
	cluster := testenv.StartEtcd(t, 1)
	m := cluster.Members[0]
	thawed := true
	t.Cleanup(func() {
		if !thawed {
			_ = m.Thaw()
		}
	})
	client, err := etcd.New(t.Context(), etcd.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	tag := img.Tag()
	// The etcd server is the test's own: the default prefix is free.
	prefix, host, service := records.DefaultPrefix, "host-"+tag, "svc-"+tag
	dir := t.TempDir()
	src, dest, renders := filepath.Join(dir, "count.tmpl"), filepath.Join(dir, "count.txt"), filepath.Join(dir, "renders.log")
	if err := os.WriteFile(src, []byte(`{{with index .Services "`+service+`"}}{{len .}}{{else}}0{{end}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := config.ParseTemplateFlag(src+":"+dest+":cat "+dest+" >> "+renders, dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Prefixes = []string{records.ServicesPrefix(prefix)}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := daemon.Settings{
		Runtime:   daemon.RuntimeDocker,
		StateDir:  t.TempDir(),
		Socket:    filepath.Join(t.TempDir(), "berth.sock"),
		StoreURL:  cluster.URL(),
		Listen:    freePort(t),
		Templates: []config.Template{tmpl},
		Daemon: daemon.Config{
			Registrar:  registrar.Config{Prefix: prefix, Host: host, TTL: ttl, Resync: time.Hour},
			StallAfter: threshold,
			Logger:     logger,
		},
	}
	out, err := exec.Command("docker", "run", "-d", "--label", img.Label, "--network", netName,
		"--label", "berth.service="+service, "-e", "VIRTUAL_PORT=8080", img.Ref).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	key := records.ServiceKey(prefix, service, host, id)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, s) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	daemon.Eventually(t, "the instance rendered", 30*time.Second, func() bool {
		b, _ := os.ReadFile(dest)
		return string(b) == "1\n"
	})
	healthz := func() (int, daemon.HealthReport) {
		var rep daemon.HealthReport
		resp, err := http.Get("http://" + s.Listen + "/healthz")
		if err != nil {
			return 0, rep
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&rep)
		return resp.StatusCode, rep
	}
	if code, rep := healthz(); code != http.StatusOK {
		t.Fatalf("/healthz before the stall: %d %+v", code, rep)
	}

	// Poll the output throughout.
	var (
		mu    sync.Mutex
		polls = map[string]int{}
	)
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			b, err := os.ReadFile(dest)
			if err == nil {
				mu.Lock()
				polls[string(b)]++
				mu.Unlock()
			}
			select {
			case <-stopPoll:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	kv, err := client.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("record before the stall: %v", err)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed = false
	frozen := time.Now()
	var failedAfter time.Duration
	var failed daemon.HealthReport
	for failedAfter == 0 && time.Since(frozen) < threshold+ttl+3*time.Second {
		if code, rep := healthz(); code == http.StatusServiceUnavailable {
			failedAfter, failed = time.Since(frozen), rep
		}
		time.Sleep(100 * time.Millisecond)
	}
	switch {
	case failedAfter == 0:
		t.Errorf("/healthz never failed with the store frozen")
	case failedAfter > threshold+time.Second:
		t.Errorf("/healthz failed %s after the freeze; want within the threshold %s", failedAfter.Round(time.Millisecond), threshold)
	default:
		t.Logf("/healthz failed %s after the freeze (threshold %s): %+v", failedAfter.Round(time.Millisecond), threshold, failed.Checks[0])
	}
	// Past the lease's TTL on the server's clock too.
	time.Sleep(time.Until(frozen.Add(threshold + ttl + 2*time.Second)))
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true

	// The record comes back on a new lease, and health with it.
	var back bool
	daemon.Eventually(t, "/healthz back after the thaw", 30*time.Second, func() bool {
		code, _ := healthz()
		kv2, err := client.Get(t.Context(), key)
		back = err == nil && kv2.ModRevision > kv.ModRevision
		return code == http.StatusOK && back
	})
	// The old lease is gone from the server: the record was really lost and
	// re-written (else the trial proved nothing).
	time.Sleep(2 * time.Second)
	close(stopPoll)
	<-polled

	mu.Lock()
	defer mu.Unlock()
	if polls["1\n"] == 0 || len(polls) != 1 {
		t.Errorf("outputs polled during the trial: %v; want only \"1\\n\"", polls)
	}
	b, err := os.ReadFile(renders)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "1" {
			t.Errorf("render %d swapped in %q: the proxy saw the gap (all renders: %q)", i+1, line, b)
		}
	}
	if n := metric(t, s.Listen, "berth_render_holds_total"); n < 1 {
		t.Errorf("no hold of the renders happened (holds %v): the lease was not lost, the trial proved nothing", n)
	}
	fmt.Fprintf(os.Stderr, "renders during the trial: %q\n", b)
}

// metric reads one series from /metrics (0 if absent).
func metric(t *testing.T, addr, series string) float64 {
	t.Helper()
	_, body, err := httpGet("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if name, val, ok := strings.Cut(line, " "); ok && name == series {
			var f float64
			fmt.Sscan(val, &f)
			return f
		}
	}
	return 0
}

// TestRecordsDroppedComeBack: records of this host that the store drops
// behind the registrar's back (as when it revokes a lost lease) are
// written again even when no template watches them: the store probe
// finds this host's record gone and the registrar re-registers.
func TestRecordsDroppedComeBack(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	netName := testenv.DockerNetwork(t, img)
	cluster := testenv.StartEtcd(t, 1)
	client, err := etcd.New(t.Context(), etcd.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tag := img.Tag()
	host, service := "host-"+tag, "svc-"+tag
	out, err := exec.Command("docker", "run", "-d", "--label", img.Label, "--network", netName,
		"--label", "berth.service="+service, "-e", "VIRTUAL_PORT=8080", img.Ref).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	s := daemon.Settings{
		Runtime:  daemon.RuntimeDocker,
		StateDir: t.TempDir(),
		Socket:   filepath.Join(t.TempDir(), "berth.sock"), // not the default: the deploy API listens there
		StoreURL: cluster.URL(),
		Daemon: daemon.Config{
			Registrar:  registrar.Config{Host: host, TTL: 5 * time.Second, Resync: time.Hour},
			StallAfter: time.Second,
			Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, s) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	keys := []string{records.ServiceKey(records.DefaultPrefix, service, host, id), records.HostKey(records.DefaultPrefix, host)}
	present := func() bool {
		for _, k := range keys {
			if _, err := client.Get(t.Context(), k); err != nil {
				return false
			}
		}
		return true
	}
	daemon.Eventually(t, "registered", 30*time.Second, present)
	if _, err := client.Delete(t.Context(), records.Root(records.DefaultPrefix), store.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if present() {
		t.Fatal("records still there after the delete")
	}
	daemon.Eventually(t, "records written again", 15*time.Second, present)
}
