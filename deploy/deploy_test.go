package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/runtimetest"
	"github.com/berthd/berth/store/memstore"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		name, toml, err string
	}{
		{"ok", "image = \"web:2\"\nreplicas = 3\nenv = [\"A=1\"]\nmemory = \"64m\"\npublish = [\"8080:80\"]\n[health]\ncmd = \"true\"\ninterval = \"1s\"\n", ""},
		{"unknown key", "image = \"web:2\"\n\nreplica = 3\n", "service.toml:3:1: unknown key \"replica\""},
		{"bad syntax", "image = \"web:2\"\nreplicas = = 3\n", "service.toml:2:"},
		{"wrong type", "image = \"web:2\"\nreplicas = \"three\"\n", "service.toml:2:"},
		{"bad memory", "image = \"web:2\"\n\nmemory = \"lots\"\n", "service.toml:3: memory: \"lots\""},
		{"bad publish", "image = \"web:2\"\npublish = [\"x:80\"]\n", "service.toml:2: publish: \"x:80\""},
		{"bad env", "image = \"web:2\"\nenv = [\"NOVALUE\"]\n", "service.toml:2: env: \"NOVALUE\""},
		{"bad duration", "image = \"web:2\"\n[health]\ncmd = \"true\"\ninterval = \"soon\"\n", "service.toml:4: interval: \"soon\""},
		{"no image", "replicas = 2\n", "service.toml: image: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := deploy.ParseSpec("service.toml", []byte(tc.toml))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Image != "web:2" || s.Replicas != 3 || s.Container.Memory != 64<<20 || len(s.Container.Publish) != 1 ||
					s.Container.Health == nil || s.Container.Health.Interval != time.Second || s.Container.Health.Retries != 3 {
					t.Errorf("spec: %+v", s)
				}
				if err := s.Validate("web"); err != nil {
					t.Error(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, runtime.ErrInvalid) {
				t.Fatalf("err = %v, want one containing %q (invalid)", err, tc.err)
			}
		})
	}
	// A relative volume source is the spec file's neighbour.
	s, err := deploy.ParseSpec("/srv/web/service.toml", []byte("image = \"web:2\"\nvolumes = [\"./www:/www:ro\", \"../data:/data\", \"/abs:/abs\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var srcs []string
	for _, m := range s.Container.Volumes {
		srcs = append(srcs, m.Source)
	}
	if got := strings.Join(srcs, ","); got != "/srv/web/www,/srv/data,/abs" {
		t.Errorf("volume sources of /srv/web/service.toml: %s", got)
	}
	// LoadSpec names the file it could not read.
	if _, err := deploy.LoadSpec(filepath.Join(t.TempDir(), "none.toml")); err == nil || !strings.Contains(err.Error(), "none.toml") {
		t.Errorf("missing file: %v", err)
	}
}

// rig is a deploy service over the memory store and the scripted runtime,
// with the real registrar registering the containers.
type rig struct {
	st  *memstore.Store
	rt  *runtimetest.Runtime
	svc *deploy.Service
	log *slog.Logger
}

func newRig(t *testing.T) rig {
	t.Helper()
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	rt := runtimetest.New()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	reg, err := registrar.New(st, rt, registrar.Config{Host: "h1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-reg.Synced()
	return rig{st: st, rt: rt, log: log, svc: deploy.New(st, rt, deploy.WithHost("h1"), deploy.WithLogger(log), deploy.WithStopGrace(0))}
}

func webSpec(image string) deploy.Spec {
	return deploy.Spec{Image: image, Replicas: 2, Container: runtime.Spec{
		Env:    []string{"VIRTUAL_HOST=web.localhost"},
		Health: &runtime.HealthCheck{Cmd: []string{"true"}, Interval: time.Second},
	}}
}

// healthWhenStarted sets the health of every container the rollout
// starts, as they start, until ctx ends.
func healthWhenStarted(ctx context.Context, rt *runtimetest.Runtime, image string, h runtime.Health) {
	go func() {
		for ctx.Err() == nil {
			cs, _ := rt.List(ctx)
			for _, c := range cs {
				if c.Image == image && c.Health == runtime.HealthStarting {
					_ = rt.SetHealth(c.ID, h)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

func running(t *testing.T, rt *runtimetest.Runtime) map[string]int {
	t.Helper()
	cs, err := rt.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, c := range cs {
		if c.Running() {
			n[c.Image]++
		}
	}
	return n
}

// Deploy, replace, fail and roll back over the scripted runtime: the old
// colour serves until the new one is healthy and registered, a failure
// removes only the new one, a rollback redeploys the recorded digest, and
// the history says all of it.
func TestDeployRollbackHistory(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	healthWhenStarted(hctx, r.rt, "web:1", runtime.HealthHealthy)
	healthWhenStarted(hctx, r.rt, "web:2", runtime.HealthHealthy)
	healthWhenStarted(hctx, r.rt, "web:3", runtime.HealthUnhealthy)

	var steps []string
	rev1, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:1")}, func(p deploy.Progress) { steps = append(steps, p.Step) })
	if err != nil {
		t.Fatal(err)
	}
	if rev1.Number != 1 || rev1.Outcome != deploy.OutcomeSucceeded || rev1.Digest == "" || len(rev1.Containers) != 2 {
		t.Errorf("revision 1: %+v", rev1)
	}
	if got := strings.Join(steps, ","); got != "start,healthy,routed" {
		t.Errorf("steps of a first deploy: %s", got)
	}
	rev2, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:2")}, nil)
	if err != nil || rev2.Number != 2 {
		t.Fatalf("deploy 2: %+v, %v", rev2, err)
	}
	if n := running(t, r.rt); n["web:1"] != 0 || n["web:2"] != 2 {
		t.Errorf("after deploy 2, running: %v", n)
	}
	// A failing health check: the new ones go, the old ones stay.
	rev3, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:3"), Timeout: 10 * time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "failed its health check") || rev3.Outcome != deploy.OutcomeFailed {
		t.Fatalf("deploy 3: %+v, %v", rev3, err)
	}
	if cs, _ := r.rt.List(ctx); len(cs) != 2 {
		t.Errorf("after the failed deploy %d containers remain, want the 2 of web:2", len(cs))
	}
	// Rollback: the previous succeeded revision, by digest.
	healthWhenStarted(hctx, r.rt, rev1.Digest, runtime.HealthHealthy)
	rb, err := r.svc.Rollback(ctx, deploy.RollbackRequest{Service: "web", Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rb.RollbackTo != 1 || rb.Image != "web:1" || rb.Spec.Image != rev1.Digest {
		t.Errorf("rollback: %+v", rb)
	}
	if _, err := r.svc.Rollback(ctx, deploy.RollbackRequest{Service: "web", To: 9}, nil); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("rollback to a revision that does not exist: %v", err)
	}
	if _, err := r.svc.Rollback(ctx, deploy.RollbackRequest{Service: "web", To: 3}, nil); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("rollback to a failed revision: %v", err)
	}
	hist, err := r.svc.History(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, h := range hist {
		outcomes = append(outcomes, string(h.Outcome))
	}
	if got := strings.Join(outcomes, ","); got != "succeeded,succeeded,failed,succeeded" {
		t.Errorf("history outcomes: %s", got)
	}
	if !strings.Contains(hist[2].Reason, "health check") {
		t.Errorf("failed revision's reason: %q", hist[2].Reason)
	}
}

// A second deploy of a service in flight is refused; the first one,
// cancelled (Ctrl-C), removes what it started and records why.
func TestDeployInFlightAndCancel(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:1")}, nil) // never healthy
		errc <- err
	}()
	for r.rt.Calls(runtimetest.OpRun) < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	_, err := r.svc.Deploy(t.Context(), deploy.Request{Service: "web", Spec: webSpec("web:2")}, nil)
	if !errors.Is(err, deploy.ErrInFlight) || !strings.Contains(err.Error(), "revision 1 is being rolled out") {
		t.Errorf("second deploy: %v", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled deploy: %v", err)
	}
	if cs, _ := r.rt.List(t.Context()); len(cs) != 0 {
		t.Errorf("a cancelled deploy left %d containers", len(cs))
	}
	hist, _ := r.svc.History(t.Context(), "web")
	if len(hist) != 1 || hist[0].Outcome != deploy.OutcomeFailed || !strings.Contains(hist[0].Reason, "canceled") {
		t.Errorf("history: %+v", hist)
	}
	// Bad input is refused before anything is touched.
	for _, bad := range []deploy.Request{
		{Service: "we/b", Spec: webSpec("web:1")},
		{Service: "web", Spec: deploy.Spec{Image: "web:1"}},
		{Service: "web", Spec: deploy.Spec{Replicas: 1}},
	} {
		if _, err := r.svc.Deploy(t.Context(), bad, nil); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func names(t *testing.T, rt *runtimetest.Runtime, running bool) []string {
	t.Helper()
	cs, err := rt.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		if c.Running() == running {
			out = append(out, c.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Run keeps a deployed service at its replica count: a container that
// dies is replaced (same name, the revision's image digest).
func TestKeepReplicas(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	healthWhenStarted(ctx, r.rt, "web:1", runtime.HealthHealthy)
	rev, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	dead, err := r.rt.Inspect(ctx, "web-1-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.rt.Exit(dead.ID, 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := r.rt.Inspect(ctx, "web-1-1")
		if err == nil && c.ID != dead.ID && c.Running() {
			if c.Image != rev.Digest || c.Labels[deploy.LabelRevision] != "1" {
				t.Errorf("replacement: image %s labels %v, want digest %s", c.Image, c.Labels, rev.Digest)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web-1-1 not replaced: running %v, stopped %v", names(t, r.rt, true), names(t, r.rt, false))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := names(t, r.rt, true); !slices.Equal(got, []string{"web-1-1", "web-1-2"}) {
		t.Errorf("running: %v", got)
	}
}

// A daemon that died mid-rollout leaves a revision in progress: the next
// one undoes it (old containers still run) or finishes it (the old ones
// were already stopped), and records which.
func TestRecover(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	healthWhenStarted(hctx, r.rt, "web:1", runtime.HealthHealthy)
	rev1, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// interrupted writes revision n in progress with its containers
	// started, as a daemon that died after starting them leaves it.
	interrupted := func(n int) {
		t.Helper()
		rev := deploy.Revision{Service: "web", Number: n, Image: "web:2", Spec: webSpec("web:2"), Host: "h1",
			Started: time.Now(), Outcome: deploy.OutcomeInProgress}
		if n == 3 {
			rev.Serving = time.Now() // it got past step 3, then stopped the old ones
		}
		b, _ := json.Marshal(rev)
		if _, err := r.st.Put(ctx, records.DeploymentKey("", "web", n), b); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 2; i++ {
			if _, err := r.rt.Run(ctx, runtime.Spec{Name: fmt.Sprintf("web-%d-%d", n, i), Image: "web:2",
				Labels: map[string]string{deploy.LabelService: "web", deploy.LabelRevision: strconv.Itoa(n)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	outcome := func(n int) deploy.Revision {
		t.Helper()
		hist, err := r.svc.History(ctx, "web")
		if err != nil || len(hist) < n {
			t.Fatalf("history: %v, %v", hist, err)
		}
		return hist[n-1]
	}
	// Old containers still run: undone.
	interrupted(2)
	restarted := deploy.New(r.st, r.rt, deploy.WithHost("h1"), deploy.WithLogger(r.log), deploy.WithStopGrace(0))
	if err := restarted.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(t, r.rt, true); !slices.Equal(got, []string{"web-1-1", "web-1-2"}) || len(names(t, r.rt, false)) != 0 {
		t.Errorf("after undoing: running %v, stopped %v", got, names(t, r.rt, false))
	}
	if o := outcome(2); o.Outcome != deploy.OutcomeFailed || !strings.Contains(o.Reason, "interrupted by a daemon restart") {
		t.Errorf("revision 2: %s %q", o.Outcome, o.Reason)
	}
	// The old ones already stopped: finished.
	interrupted(3)
	for _, c := range rev1.Containers {
		if err := r.rt.Stop(ctx, c, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := deploy.New(r.st, r.rt, deploy.WithHost("h1"), deploy.WithLogger(r.log)).Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(t, r.rt, true); !slices.Equal(got, []string{"web-3-1", "web-3-2"}) || len(names(t, r.rt, false)) != 0 {
		t.Errorf("after finishing: running %v, stopped %v", got, names(t, r.rt, false))
	}
	if o := outcome(3); o.Outcome != deploy.OutcomeSucceeded {
		t.Errorf("revision 3: %s %q", o.Outcome, o.Reason)
	}
	// Nothing is left locked: the next deploy goes ahead.
	healthWhenStarted(hctx, r.rt, "web:4", runtime.HealthHealthy)
	if _, err := restarted.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:4")}, nil); err != nil {
		t.Fatal(err)
	}
}

// Deployment records are store input: one whose body disagrees with its
// key (another revision number, another service) or whose spec does not
// validate (a billion replicas) is left out of the history, and the next
// deploy numbers its revision from the good ones.
func TestHostileDeploymentRecords(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	put := func(n int, rev deploy.Revision) {
		t.Helper()
		b, err := json.Marshal(rev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.st.Put(ctx, records.DeploymentKey(records.DefaultPrefix, "web", n), b); err != nil {
			t.Fatal(err)
		}
	}
	good := webSpec("web:1")
	put(1, deploy.Revision{Service: "web", Number: 1, Spec: good, Outcome: deploy.OutcomeSucceeded})
	put(2, deploy.Revision{Service: "web", Number: 99999999, Spec: good, Outcome: deploy.OutcomeSucceeded})
	put(3, deploy.Revision{Service: "api", Number: 3, Spec: good, Outcome: deploy.OutcomeSucceeded})
	huge := good
	huge.Replicas = 1_000_000_000
	put(4, deploy.Revision{Service: "web", Number: 4, Spec: huge, Outcome: deploy.OutcomeSucceeded})
	hist, err := r.svc.History(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Number != 1 {
		t.Fatalf("history = %+v, want revision 1 alone", hist)
	}
}

// Deploys of one service from several daemons sharing the store (each
// its own client, as other hosts or processes): exactly one wins the
// create-only lock, the others are refused naming the holder; the lock
// goes with its holder's lease, and a recoverer acts only under it.
func TestDeployLockAcrossDaemons(t *testing.T) {
	r := newRig(t)
	srv := r.st.Server()
	const daemons = 4
	svcs := make([]*deploy.Service, daemons)
	clients := make([]*memstore.Store, daemons)
	for i := range svcs {
		clients[i] = srv.Open()
		t.Cleanup(func() { clients[i].Close() })
		svcs[i] = deploy.New(clients[i], r.rt, deploy.WithHost(fmt.Sprintf("h%d", i)), deploy.WithLogger(r.log), deploy.WithStopGrace(0))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make(chan error, daemons)
	for _, svc := range svcs {
		go func() {
			_, err := svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:1")}, nil) // never healthy
			errs <- err
		}()
	}
	refused := 0
	for range daemons - 1 {
		err := <-errs
		if !errors.Is(err, deploy.ErrInFlight) || !strings.Contains(err.Error(), "has been rolling it out since") {
			t.Fatalf("a racing deploy: %v, want ErrInFlight naming the holder", err)
		}
		refused++
	}
	select {
	case err := <-errs:
		t.Fatalf("all %d racing deploys ended (the last: %v); want one under way", daemons, err)
	case <-time.After(200 * time.Millisecond):
	}
	// Find the holder: the one whose history has revision 1 in progress
	// (any client reads it), and its host.
	hist, err := r.svc.History(t.Context(), "web")
	if err != nil || len(hist) != 1 || hist[0].Outcome != deploy.OutcomeInProgress {
		t.Fatalf("history while one runs: %+v, %v", hist, err)
	}
	holder := int(hist[0].Host[1] - '0')
	// A recoverer of the holder's host does not act while it holds the lock.
	rec := deploy.New(r.st, r.rt, deploy.WithHost(hist[0].Host), deploy.WithLogger(r.log))
	if err := rec.Recover(t.Context()); !errors.Is(err, deploy.ErrInFlight) {
		t.Errorf("recover while the rollout holds the lock: %v, want ErrInFlight", err)
	}
	if n := r.rt.Calls(runtimetest.OpRun); n != 2 {
		t.Errorf("%d containers started, want the 2 of the one rollout", n)
	}
	// The holder dies (its client's lease goes; its rollout is cut short
	// the way a killed daemon's is: no undo, no record).
	if err := clients[holder].Close(); err != nil {
		t.Fatal(err)
	}
	// Now a recoverer claims the lock and settles the revision: undone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rec.Recover(t.Context())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recover after the holder died: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-errs
	hist, _ = r.svc.History(t.Context(), "web")
	if len(hist) != 1 || hist[0].Outcome != deploy.OutcomeFailed {
		t.Errorf("after recovery: %+v", hist)
	}
	// And the next deploy goes ahead.
	hctx, stop := context.WithCancel(t.Context())
	defer stop()
	healthWhenStarted(hctx, r.rt, "web:2", runtime.HealthHealthy)
	other := svcs[(holder+1)%daemons]
	if _, err := other.Deploy(t.Context(), deploy.Request{Service: "web", Spec: webSpec("web:2")}, nil); err != nil {
		t.Fatal(err)
	}
}

type freeAddresses int

func (f freeAddresses) FreeAddresses(context.Context) (int, error) { return int(f), nil }

// --max-surge starts the new containers N at a time, each batch healthy
// before the next; a surge the subnet has no addresses for is refused
// before anything starts.
func TestMaxSurge(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	healthWhenStarted(hctx, r.rt, "web:1", runtime.HealthHealthy)
	spec := webSpec("web:1")
	spec.Replicas = 3
	var steps []string
	if _, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: spec, MaxSurge: 2}, func(p deploy.Progress) { steps = append(steps, p.Step) }); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(steps, ","); got != "start,healthy,start,healthy,routed" {
		t.Errorf("steps with max surge 2 of 3: %s", got)
	}
	if _, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: spec, MaxSurge: -1}, nil); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("max surge -1: %v", err)
	}

	short := deploy.New(r.st, r.rt, deploy.WithHost("h1"), deploy.WithLogger(r.log), deploy.WithAddresses(freeAddresses(2)))
	runs := r.rt.Calls(runtimetest.OpRun)
	_, err := short.Deploy(ctx, deploy.Request{Service: "web", Spec: spec, MaxSurge: 1}, nil)
	if !errors.Is(err, runtime.ErrConflict) || !strings.Contains(err.Error(), "not enough addresses in the subnet for the surge: 3 new container(s)") {
		t.Fatalf("deploy of 3 with 2 free addresses: %v", err)
	}
	if n := r.rt.Calls(runtimetest.OpRun); n != runs {
		t.Errorf("a refused surge started %d container(s)", n-runs)
	}
	if hist, _ := r.svc.History(ctx, "web"); len(hist) != 1 {
		t.Errorf("a refused surge recorded a revision: %d revisions", len(hist))
	}
}

// History is pruned to the last N revisions, never the last succeeded
// one nor the last; numbers go on from the last kept.
func TestHistoryPruned(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	healthWhenStarted(hctx, r.rt, "web:1", runtime.HealthHealthy)
	healthWhenStarted(hctx, r.rt, "web:2", runtime.HealthHealthy)
	healthWhenStarted(hctx, r.rt, "web:3", runtime.HealthUnhealthy)
	svc := deploy.New(r.st, r.rt, deploy.WithHost("h1"), deploy.WithLogger(r.log), deploy.WithStopGrace(0), deploy.WithHistory(3))
	numbers := func() string {
		t.Helper()
		hist, err := svc.History(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hist {
			out = append(out, fmt.Sprint(h.Number, h.Outcome[:1]))
		}
		return strings.Join(out, ",")
	}
	if _, err := svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:1")}, nil); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:3")}, nil); err == nil {
			t.Fatal("a deploy of an unhealthy image succeeded")
		}
	}
	if got := numbers(); got != "1s,4f,5f" {
		t.Errorf("after 1 good and 4 failed deploys, keeping 3: %s, want 1s,4f,5f", got)
	}
	if _, err := svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:2")}, nil); err != nil {
		t.Fatal(err)
	}
	if got := numbers(); got != "4f,5f,6s" {
		t.Errorf("after the next good deploy: %s, want 4f,5f,6s", got)
	}
}

// Undeploy drains, stops and removes a service's containers, records it,
// and the keeper no longer keeps it; a rollback brings back what ran.
func TestUndeploy(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	healthWhenStarted(ctx, r.rt, "web:1", runtime.HealthHealthy)
	if _, err := r.svc.Undeploy(ctx, "web", nil); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("undeploy of a service never deployed: %v", err)
	}
	rev1, err := r.svc.Deploy(ctx, deploy.Request{Service: "web", Spec: webSpec("web:1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var steps []string
	rev, err := r.svc.Undeploy(ctx, "web", func(p deploy.Progress) { steps = append(steps, p.Step) })
	if err != nil {
		t.Fatal(err)
	}
	if rev.Number != 2 || rev.Outcome != deploy.OutcomeUndeployed || !rev.Undeploy {
		t.Errorf("undeploy revision: %+v", rev)
	}
	if got := strings.Join(steps, ","); got != "stop,remove" {
		t.Errorf("undeploy steps: %s", got)
	}
	// The keeper does not bring them back.
	time.Sleep(2500 * time.Millisecond)
	if cs, _ := r.rt.List(ctx); len(cs) != 0 {
		t.Errorf("%d containers after undeploy and 2 keeper rounds", len(cs))
	}
	healthWhenStarted(ctx, r.rt, rev1.Digest, runtime.HealthHealthy)
	rb, err := r.svc.Rollback(ctx, deploy.RollbackRequest{Service: "web"}, nil)
	if err != nil || rb.RollbackTo != 1 {
		t.Fatalf("rollback after undeploy: %+v, %v", rb, err)
	}
	if n := running(t, r.rt); n[rev1.Digest] != 2 {
		t.Errorf("after the rollback, running: %v", n)
	}
}
