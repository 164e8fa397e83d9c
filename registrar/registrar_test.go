package registrar_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
)

// env is one registrar under test: the real Docker Engine as its runtime,
// an embedded etcd as its store, a key prefix of its own (other tests'
// containers on this Docker host get registered under it too, harmlessly).
type env struct {
	img    testenv.DockerImage
	net    string
	rt     *docker.Runtime
	server *etcd.Store // the embedded server, and a client for assertions
	dir    string      // the embedded server's directory
	prefix string
	host   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	img := testenv.BuildDockerImage(t)
	rt, err := docker.New(t.Context(), docker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	dir := t.TempDir()
	server, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	tag := img.Tag()
	return &env{img: img, net: testenv.DockerNetwork(t, img), rt: rt, server: server, dir: dir, prefix: "/reg-" + tag, host: "host-" + tag}
}

// start runs a registrar on its own store client (so that the test can
// kill that client) and returns the client.
func (e *env) start(t *testing.T, cfg registrar.Config) (*etcd.Store, context.CancelFunc) {
	t.Helper()
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: e.dir, JoinOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Prefix = e.host, e.prefix
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := registrar.New(st, e.rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("registrar: %v", err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-ctx.Done():
		default:
			stop()
		}
		st.Close()
	})
	return st, stop
}

func (e *env) run(t *testing.T, name string, mod func(*runtime.Spec)) runtime.Container {
	t.Helper()
	k, v, _ := strings.Cut(e.img.Label, "=")
	s := runtime.Spec{Name: name + "-" + strings.TrimPrefix(e.host, "host-"), Image: e.img.Ref, Network: e.net,
		Labels: map[string]string{k: v}, Env: []string{"WHOAMI_NAME=" + name}}
	if mod != nil {
		mod(&s)
	}
	c, err := e.rt.Run(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// instance waits until the instance record of c under service is in the
// store and satisfies cond (nil: present), and returns it.
func (e *env) instance(t *testing.T, service string, c runtime.Container, cond func(records.Instance) bool) records.Instance {
	t.Helper()
	key := records.ServiceKey(e.prefix, service, e.host, c.ID)
	deadline := time.Now().Add(30 * time.Second)
	for {
		kv, err := e.server.Get(t.Context(), key)
		if err == nil {
			var in records.Instance
			if err := json.Unmarshal(kv.Value, &in); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if cond == nil || cond(in) {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: condition not met within 30s (last: %s, %v)", key, kv.Value, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) gone(t *testing.T, key string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := e.server.Get(t.Context(), key)
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still registered after %s", key, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRegistersAndDrains(t *testing.T) {
	e := newEnv(t)
	e.start(t, registrar.Config{TTL: 5 * time.Second, Drain: 2 * time.Second, Resync: time.Hour})

	web := e.run(t, "web", func(s *runtime.Spec) {
		s.Labels["berth.service"] = "web"
		s.Env = append(s.Env, "VIRTUAL_HOST=web.localhost", "VIRTUAL_PORT=8080", "SERVICE_TAGS=a, b", "UNRELATED=x")
	})
	in := e.instance(t, "web", web, nil)
	if in.IP != web.IP || in.Port != 8080 || in.Host != e.host || in.State != records.StateRunning ||
		in.Env["VIRTUAL_HOST"] != "web.localhost" || in.Env["UNRELATED"] != "" || strings.Join(in.Tags, ",") != "a,b" {
		t.Fatalf("instance record: %+v", in)
	}
	ckv, err := e.server.Get(t.Context(), records.ContainerKey(e.prefix, e.host, web.ID))
	if err != nil {
		t.Fatal(err)
	}
	var rc records.Container
	if err := json.Unmarshal(ckv.Value, &rc); err != nil || rc.IP != web.IP || !rc.State.Running || rc.Env["VIRTUAL_HOST"] != "web.localhost" {
		t.Fatalf("container record: %+v %v", rc, err)
	}

	// The service name falls back to the image repository's base name.
	plain := e.run(t, "plain", nil)
	e.instance(t, "berth-test-whoami", plain, nil)

	// An invalid VIRTUAL_PORT: registered, without its vhost.
	bad := e.run(t, "bad", func(s *runtime.Spec) {
		s.Labels["berth.service"] = "bad"
		s.Env = append(s.Env, "VIRTUAL_HOST=bad.localhost", "VIRTUAL_PORT=eighty")
	})
	if in := e.instance(t, "bad", bad, nil); in.Env["VIRTUAL_HOST"] != "" || in.Port != 8080 {
		t.Fatalf("invalid VIRTUAL_PORT record: %+v", in)
	}

	// Ignored containers are not registered.
	ign := e.run(t, "ignored", func(s *runtime.Spec) { s.Labels["berth.ignore"] = "true" })

	// Stop: draining for the drain period, then gone.
	if err := e.rt.Stop(t.Context(), web.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	e.instance(t, "web", web, func(in records.Instance) bool { return in.State == records.StateDraining })
	e.gone(t, records.ServiceKey(e.prefix, "web", e.host, web.ID), 10*time.Second)
	e.gone(t, records.ContainerKey(e.prefix, e.host, web.ID), time.Second)

	kvs, _, err := e.server.List(t.Context(), e.prefix+"/")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if strings.Contains(kv.Key, ign.ID) {
			t.Fatalf("ignored container registered: %s", kv.Key)
		}
	}
}

func TestHealthGated(t *testing.T) {
	e := newEnv(t)
	e.start(t, registrar.Config{TTL: 5 * time.Second, Resync: time.Hour})
	// Watch every write under the service from before the container exists.
	_, rev, err := e.server.List(t.Context(), records.ServicesPrefix(e.prefix))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	writes := e.server.Watch(wctx, records.ServicesPrefix(e.prefix)+"slow/", rev)
	c := e.run(t, "slow", func(s *runtime.Spec) {
		s.Labels["berth.service"] = "slow"
		s.Health = &runtime.HealthCheck{Cmd: []string{"/whoami", "-check", "http://127.0.0.1:8080/"},
			Interval: 500 * time.Millisecond, Timeout: time.Second, Retries: 3}
	})
	in := e.instance(t, "slow", c, nil)
	if in.Health != records.HealthHealthy {
		t.Fatalf("published with health %q", in.Health)
	}
	// Every write of the record, from the first, says healthy.
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case resp := <-writes:
			for _, ev := range resp.Events {
				var w records.Instance
				json.Unmarshal(ev.KV.Value, &w)
				if w.Health != records.HealthHealthy {
					t.Fatalf("record written while %q", w.Health)
				}
				seen = true
			}
		case <-timeout:
			t.Fatal("the record's write never showed on the watch")
		}
	}
}

// TestReconcileAndLease: at start and every resync the registrar removes
// this host's records that match no container (leaving other hosts'
// alone); when its store client dies without revoking, the records expire
// with the lease.
func TestReconcileAndLease(t *testing.T) {
	e := newEnv(t)
	ghost := records.ServiceKey(e.prefix, "ghost", e.host, strings.Repeat("d", 64))
	other := records.ServiceKey(e.prefix, "ghost", "another-host", strings.Repeat("e", 64))
	for _, k := range []string{ghost, other} {
		if _, err := e.server.Put(t.Context(), k, []byte(`{"id":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	st, stop := e.start(t, registrar.Config{TTL: 3 * time.Second, Resync: 500 * time.Millisecond})
	c := e.run(t, "kept", func(s *runtime.Spec) { s.Labels["berth.service"] = "kept" })
	e.instance(t, "kept", c, nil)
	e.gone(t, ghost, 10*time.Second)
	if _, err := e.server.Get(t.Context(), other); err != nil {
		t.Fatalf("another host's record was removed: %v", err)
	}
	// A record deleted behind the registrar's back comes back at resync.
	e.server.Delete(t.Context(), records.ServiceKey(e.prefix, "kept", e.host, c.ID))
	e.instance(t, "kept", c, nil)

	// The registrar dies without cleaning up: its records expire with the
	// lease, the container keeps running.
	stop()
	if err := st.Detach(); err != nil {
		t.Fatal(err)
	}
	e.gone(t, records.ServiceKey(e.prefix, "kept", e.host, c.ID), 3*3*time.Second)
	e.gone(t, records.HostKey(e.prefix, e.host), time.Second)
	if live, err := e.rt.Inspect(t.Context(), c.ID); err != nil || !live.Running() {
		t.Fatalf("container after registrar death: %+v %v", live, err)
	}
}

// TestRestartTakesOverRecords: a daemon that dies (its lease left to expire)
// and a new one that starts before the TTL runs out. The new registrar must
// bind the records to its own lease; otherwise they would expire under it
// while the container runs, and come back only at the next resync.
func TestRestartTakesOverRecords(t *testing.T) {
	e := newEnv(t)
	ttl := 2 * time.Second
	st, stop := e.start(t, registrar.Config{TTL: ttl, Resync: time.Hour})
	c := e.run(t, "survivor", func(s *runtime.Spec) { s.Labels["berth.service"] = "survivor" })
	key := records.ServiceKey(e.prefix, "survivor", e.host, c.ID)
	e.instance(t, "survivor", c, nil)
	stop()
	if err := st.Detach(); err != nil { // a crash: nothing revoked
		t.Fatal(err)
	}
	before, err := e.server.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, registrar.Config{TTL: ttl, Resync: time.Hour})
	// Wait until the new registrar has written the record (a new
	// revision), then past the old lease's TTL: it must still be there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		kv, err := e.server.Get(t.Context(), key)
		if err == nil && kv.ModRevision > before.ModRevision {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not rewritten by the new registrar", key)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(ttl + 2*time.Second)
	if _, err := e.server.Get(t.Context(), key); err != nil {
		t.Fatalf("%s expired with the dead daemon's lease: %v", key, err)
	}
}

// TestDrainStartsAtStopSignal: the drain begins when the stop signal is
// sent, while the container still serves, not after it is gone.
func TestDrainStartsAtStopSignal(t *testing.T) {
	e := newEnv(t)
	e.start(t, registrar.Config{TTL: 5 * time.Second, Drain: 2 * time.Second, Resync: time.Hour})
	c := e.run(t, "lingering", func(s *runtime.Spec) {
		s.Labels["berth.service"] = "lingering"
		s.Env = append(s.Env, "WHOAMI_LINGER=4s")
	})
	e.instance(t, "lingering", c, nil)
	stopped := make(chan error, 1)
	go func() { stopped <- e.rt.Stop(context.WithoutCancel(t.Context()), c.ID, 20*time.Second) }()
	e.instance(t, "lingering", c, func(in records.Instance) bool { return in.State == records.StateDraining })
	if live, err := e.rt.Inspect(t.Context(), c.ID); err != nil || !live.Running() {
		t.Fatalf("draining only once the container was gone (state %v, err %v)", live.State, err)
	}
	e.gone(t, records.ServiceKey(e.prefix, "lingering", e.host, c.ID), 10*time.Second)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// TestStopSignalOutlastsDrain: a container that keeps serving after its
// stop signal for longer than the drain stays out of the store while it
// shuts down, whatever the reconciles in between find running.
func TestStopSignalOutlastsDrain(t *testing.T) {
	e := newEnv(t)
	e.start(t, registrar.Config{TTL: 5 * time.Second, Drain: time.Second, Resync: 200 * time.Millisecond})
	c := e.run(t, "slow", func(s *runtime.Spec) {
		s.Labels["berth.service"] = "slow"
		s.Env = append(s.Env, "WHOAMI_LINGER=5s")
	})
	key := records.ServiceKey(e.prefix, "slow", e.host, c.ID)
	e.instance(t, "slow", c, nil)
	stopped := make(chan error, 1)
	go func() { stopped <- e.rt.Stop(context.WithoutCancel(t.Context()), c.ID, 30*time.Second) }()
	e.instance(t, "slow", c, func(in records.Instance) bool { return in.State == records.StateDraining })
	e.gone(t, key, 5*time.Second)
	// Still running for a few seconds, with a reconcile every 200ms: the
	// record must not come back as running.
	for {
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.server.Get(t.Context(), key); err == nil {
				t.Fatalf("%s registered again after the container stopped", key)
			}
			return
		default:
		}
		if kv, err := e.server.Get(t.Context(), key); err == nil {
			t.Fatalf("%s came back while the container was shutting down: %s", key, kv.Value)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOwnsAndReregister: the registrar knows which records it owns (the
// daemon tells a lost lease from its own deletes by them); Reregister
// writes back records the store dropped behind its back; a record it
// removes itself stops being owned.
func TestOwnsAndReregister(t *testing.T) {
	e := newEnv(t)
	r, err := registrar.New(e.server, e.rt, registrar.Config{Host: e.host, Prefix: e.prefix, TTL: 5 * time.Second, Resync: time.Hour,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c := e.run(t, "owned", func(s *runtime.Spec) { s.Labels["berth.service"] = "owned" })
	e.instance(t, "owned", c, nil)
	key := records.ServiceKey(e.prefix, "owned", e.host, c.ID)
	kv, err := e.server.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if rev, ok := r.Owns(key); !ok || rev < kv.ModRevision {
		t.Errorf("Owns(%s) = %d, %v; written at %d", key, rev, ok, kv.ModRevision)
	}
	if _, ok := r.OwnedUnder(records.ServicesPrefix(e.prefix))[key]; !ok {
		t.Errorf("OwnedUnder lacks %s", key)
	}
	if _, ok := r.Owns(records.HostKey(e.prefix, e.host)); !ok {
		t.Error("the host record is not owned")
	}

	// The store drops every record (a revoked lease): Reregister writes them back.
	if _, err := e.server.Delete(t.Context(), records.Root(e.prefix), store.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	r.Reregister()
	if r.Reregistering().IsZero() {
		t.Error("Reregistering reports nothing pending right after Reregister")
	}
	e.instance(t, "owned", c, nil)
	deadline := time.Now().Add(10 * time.Second)
	for !r.Reregistering().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("re-registration still pending after its records are back")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Its own delete: no longer owned.
	if err := e.rt.Stop(t.Context(), c.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	e.gone(t, key, 30*time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, ok := r.Owns(key); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a record the registrar removed is still owned")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
