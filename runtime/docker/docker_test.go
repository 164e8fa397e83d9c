package docker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
)

const dockerSocket = "unix:///var/run/docker.sock"

func newRuntime(t *testing.T, host string) *docker.Runtime {
	t.Helper()
	r, err := docker.New(t.Context(), docker.Config{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func spec(img testenv.DockerImage, network, name string, env ...string) runtime.Spec {
	k, v, _ := strings.Cut(img.Label, "=")
	return runtime.Spec{
		Name: name, Image: img.Ref, Network: network, Env: append([]string{"WHOAMI_NAME=" + name}, env...),
		Labels: map[string]string{k: v, "com.example.role": "web"},
	}
}

// events collects a Runtime's events for assertions.
type events struct {
	mu  sync.Mutex
	evs []runtime.Event
}

func collect(t *testing.T, r *docker.Runtime) *events {
	ctx, cancel := context.WithCancel(t.Context())
	ch, errc := r.Events(ctx)
	e := &events{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			e.mu.Lock()
			e.evs = append(e.evs, ev)
			e.mu.Unlock()
		}
		if err := <-errc; err != nil {
			t.Errorf("events ended with %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// wait returns the first event of typ for the container named name.
func (e *events) wait(t *testing.T, name string, typ runtime.EventType) runtime.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.mu.Lock()
		for _, ev := range e.evs {
			if ev.Container.Name == name && ev.Type == typ {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %s within 30s; saw %s", typ, name, e.summary())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *events) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.evs)
}

// kills counts the kill events from the from-th on.
func (e *events) kills(from int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs[from:] {
		if ev.Type == runtime.EventKill {
			n++
		}
	}
	return n
}

func (e *events) summary() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, ev := range e.evs {
		fmt.Fprintf(&b, "%s:%s ", ev.Container.Name, ev.Type)
	}
	return b.String()
}

func TestLifecycleEvents(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	net := testenv.DockerNetwork(t, img)
	r := newRuntime(t, dockerSocket)
	evs := collect(t, r)
	time.Sleep(200 * time.Millisecond) // let the event stream connect

	name := "berth-test-" + img.Tag()
	c, err := r.Run(t.Context(), spec(img, net, name, "VIRTUAL_HOST=web.localhost"))
	if err != nil {
		t.Fatal(err)
	}
	if c.IP == "" || !c.Running() || c.Labels["com.example.role"] != "web" {
		t.Fatalf("run returned %+v", c)
	}
	start := evs.wait(t, name, runtime.EventStart)
	if start.Container.IP != c.IP || len(start.Container.Ports) != 1 || start.Container.Ports[0].Port != 8080 {
		t.Fatalf("start event snapshot: %+v", start.Container)
	}
	if len(c.Networks) != 1 || c.Networks[0].Name != net {
		t.Fatalf("networks %+v, want only %s", c.Networks, net)
	}
	// The container answers on its IP (on the test's own network): the
	// snapshot is the real one.
	if got := httpGet(t, "http://"+c.IP+":8080/"); got != name {
		t.Fatalf("container answers %q", got)
	}

	list, err := r.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, lc := range list {
		found = found || lc.ID == c.ID
	}
	if !found {
		t.Fatal("running container not listed")
	}

	// One event costs one inspection, however many containers exist.
	before, seenBefore := r.APICalls(), evs.count()
	if err := r.Stop(t.Context(), c.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	die := evs.wait(t, name, runtime.EventDie)
	evs.wait(t, name, runtime.EventStop)
	if die.Container.Running() || die.Container.State != runtime.StateExited {
		t.Fatalf("die snapshot: %+v", die.Container)
	}
	time.Sleep(300 * time.Millisecond) // the network disconnect event may trail
	// A kill event is answered from the cache: no inspection.
	// Every event seen meanwhile counts, other tests' containers' too (the
	// engine is shared): each costs at most one inspection (a kill is
	// answered from the cache, unless its container is not cached yet).
	if calls, n, kills := r.APICalls()-before, int64(evs.count()-seenBefore), int64(evs.kills(seenBefore)); calls < 1+n-kills || calls > 1+n {
		t.Fatalf("%d API calls for one stop and %d events, %d of them kills (%s); want 1 + at most one inspect per event", calls, n, kills, evs.summary())
	}
	if err := r.Remove(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	evs.wait(t, name, runtime.EventDestroy)
	if _, err := r.Inspect(t.Context(), c.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("inspect after remove: %v", err)
	}
	if _, err := r.Run(t.Context(), runtime.Spec{Image: "berth-test-no-such-image:1"}); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("run of a missing image: %v", err)
	}
}

func TestHealthEvents(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	net := testenv.DockerNetwork(t, img)
	r := newRuntime(t, dockerSocket)
	evs := collect(t, r)
	time.Sleep(200 * time.Millisecond)
	name := "berth-test-health-" + img.Tag()
	s := spec(img, net, name)
	s.Health = &runtime.HealthCheck{Cmd: []string{"/whoami", "-check", "http://127.0.0.1:8080/"}, Interval: 200 * time.Millisecond, Timeout: time.Second, Retries: 2}
	if _, err := r.Run(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	ev := evs.wait(t, name, runtime.EventHealthStatus)
	if ev.Container.Health != runtime.HealthHealthy {
		t.Fatalf("health event snapshot health %q", ev.Container.Health)
	}
}

// TestStreamCutResync cuts the connection to Docker (through a unix-socket
// relay the test controls), changes containers while the source is cut off,
// and expects it to reconnect and report every change.
func TestStreamCutResync(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	net := testenv.DockerNetwork(t, img)
	relay := newRelay(t, "/var/run/docker.sock")
	followed := newRuntime(t, "unix://"+relay.path)
	direct := newRuntime(t, dockerSocket)
	evs := collect(t, followed)
	tag := img.Tag()

	before, err := direct.Run(t.Context(), spec(img, net, "berth-test-before-"+tag))
	if err != nil {
		t.Fatal(err)
	}
	evs.wait(t, before.Name, runtime.EventStart)
	if _, err := followed.List(t.Context()); err != nil { // fill the cache, as a registrar does
		t.Fatal(err)
	}

	relay.cut()
	during, err := direct.Run(t.Context(), spec(img, net, "berth-test-during-"+tag))
	if err != nil {
		t.Fatal(err)
	}
	if err := direct.Remove(t.Context(), before.ID, runtime.Force()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	relay.restore()

	evs.wait(t, during.Name, runtime.EventStart)
	evs.wait(t, before.Name, runtime.EventDestroy)
}

// relay is a unix-socket proxy to the Docker socket whose connections the
// test can cut: a fault (a broken event stream) that cannot be caused on
// the real daemon without disturbing everything else on this machine.
type relay struct {
	path, target string
	mu           sync.Mutex
	l            net.Listener
	conns        map[net.Conn]bool
}

func newRelay(t *testing.T, target string) *relay {
	r := &relay{path: filepath.Join(t.TempDir(), "docker.sock"), target: target, conns: map[net.Conn]bool{}}
	r.restore()
	t.Cleanup(r.cut)
	return r
}

func (r *relay) restore() {
	l, err := net.Listen("unix", r.path)
	if err != nil {
		panic(err)
	}
	r.mu.Lock()
	r.l = l
	r.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", r.target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns[c], r.conns[up] = true, true
			r.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

// cut closes the listener and every relayed connection.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l != nil {
		r.l.Close()
		r.l = nil
	}
	for c := range r.conns {
		c.Close()
	}
	r.conns = map[net.Conn]bool{}
}

// httpGet fetches url, retrying while the server starts.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return strings.TrimSpace(string(body))
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nobody.sock")
	_, err := docker.New(t.Context(), docker.Config{Host: "unix://" + sock, DialTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("err = %v, want an error naming %s", err, sock)
	}
	_, err = docker.New(t.Context(), docker.Config{Host: "tcp://127.0.0.1:1", CAFile: "/nonexistent/ca.pem"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("err = %v, want the missing TLS file named", err)
	}
}

// TestAutoRemove: a spec with AutoRemove runs as docker run --rm does: the
// engine removes the container once it is stopped.
func TestAutoRemove(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	net := testenv.DockerNetwork(t, img)
	r := newRuntime(t, dockerSocket)
	evs := collect(t, r)
	time.Sleep(200 * time.Millisecond) // let the event stream connect

	name := "berth-test-rm-" + img.Tag()
	s := spec(img, net, name)
	s.AutoRemove = true
	c, err := r.Run(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Remove(context.WithoutCancel(t.Context()), c.ID, runtime.Force()) })
	if err := r.Stop(t.Context(), c.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	evs.wait(t, name, runtime.EventDestroy)
	if _, err := r.Inspect(t.Context(), c.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("inspect after the stop of an AutoRemove container: %v, want not found", err)
	}
}
