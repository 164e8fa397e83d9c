package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store/etcd"
)

// TestDeployStoreOutage: the store (the embedded etcd server the daemon
// is a client of) stops right when a rollout's new colour is in nginx,
// for longer than the drain's confirmation limit, and starts again. The
// rollout pauses with the old colour serving (its drain cannot reach the
// proxy), resumes when the store is back, and ends with a record; under a
// continuous load through real nginx no request fails.
func TestDeployStoreOutage(t *testing.T) {
	r := newProxyRig(t)
	r.start()
	for deadline := time.Now().Add(30 * time.Second); !exists(r.nginx.Conf); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("berth up never rendered nginx.conf")
		}
	}
	r.nginx.Start(t)
	img := r.whoamiImage()
	spec := func(version string) deploy.Spec {
		return deploy.Spec{Image: img, Replicas: 2, Container: runtime.Spec{Cmd: []string{"/whoami"},
			Env: []string{"VIRTUAL_HOST=web.localhost", "PORT=80", "WHOAMI_NAME=" + version}}}
	}
	c := api.NewClient(r.sock)
	// The first deploy, with --probe: once berth deploy returns, nginx's
	// reload has finished, and the very first request is served.
	out := r.cli("deploy", "web", "--image", img, "--replicas", "2", "-e", "VIRTUAL_HOST=web.localhost", "-e", "PORT=80",
		"-e", "WHOAMI_NAME=v1", "--timeout", "30s", "--probe", "http://"+r.nginx.Addr+"/", "--", "/whoami")
	if code, body, err := r.nginx.Get("web.localhost", "/"); err != nil || code != 200 || strings.TrimSpace(body) != "v1" {
		t.Errorf("the first request after the first berth deploy returned: %d %q %v, want 200 v1\n%s", code, body, err, out)
	}
	r.waitAnswers("web.localhost", "200 v1")
	load := realparts.StartLoad(r.nginx.Addr, "web.localhost", 150, 6)
	defer load.Stop()
	time.Sleep(500 * time.Millisecond)

	// v2, with the store stopped as soon as v2 is in the proxy: the next
	// step, the old colour's drain, needs the store.
	storeDir := rigStoreDir(t, r)
	outage := make(chan time.Time, 1)
	var steps []string
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	rev, err := c.Deploy(ctx, deploy.Request{Service: "web", Spec: spec("v2"), Timeout: 30 * time.Second}, func(p deploy.Progress) {
		steps = append(steps, p.Step+": "+p.Message)
		if p.Step == deploy.StepRouted {
			if err := r.st.Close(); err != nil {
				t.Errorf("stop the store: %v", err)
			}
			outage <- time.Now()
			go func() {
				time.Sleep(15 * time.Second) // beyond the drain's 1s + 10s confirmation limit
				st, err := etcd.Embedded(context.Background(), etcd.EmbeddedConfig{Dir: storeDir})
				if err != nil {
					t.Errorf("restart the store: %v", err)
					outage <- time.Time{}
					return
				}
				t.Cleanup(func() { st.Close() })
				r.st = st
				outage <- time.Now()
			}()
		}
	})
	down, up := <-outage, <-outage
	if up.IsZero() {
		t.FailNow()
	}
	t.Logf("steps:\n%s", strings.Join(steps, "\n"))
	if err != nil {
		t.Logf("deploy v2 rolled back: %v", err)
	}
	for _, want := range []string{"paused: the store is unavailable", "the store is back", "old container(s) draining"} {
		if !strings.Contains(strings.Join(steps, "\n"), want) {
			t.Errorf("the rollout did not say %q", want)
		}
	}
	if rev.Finished.Before(up) {
		t.Errorf("the rollout finished at %s, before the store came back at %s (down since %s)", rev.Finished, up, down)
	}
	time.Sleep(2 * time.Second)
	res := load.Stop()
	t.Logf("load: %d requests, %d failed, answers %v", res.Requests, res.Failed, res.Seen)
	if res.Failed != 0 {
		t.Errorf("%d of %d requests failed across the store outage: %v", res.Failed, res.Requests, res.Failures)
	}
	if res.Requests < 100*int((up.Sub(down)).Seconds()) {
		t.Errorf("only %d requests over a %s outage: the load did not run", res.Requests, up.Sub(down))
	}
	hist, err := c.History(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if last := hist[len(hist)-1]; last.Number != 2 || last.Outcome == deploy.OutcomeInProgress {
		t.Errorf("revision 2 after the outage: %d %s %q", last.Number, last.Outcome, last.Reason)
	} else if last.Outcome == deploy.OutcomeSucceeded {
		r.waitAnswers("web.localhost", "200 v2")
	} else {
		r.waitAnswers("web.localhost", "200 v1")
	}

	// berth undeploy: the containers go, and the keeper leaves them gone.
	if out := r.cli("undeploy", "web"); !strings.Contains(out, "web revision 3 undeployed") {
		t.Errorf("berth undeploy printed:\n%s", out)
	}
	time.Sleep(2500 * time.Millisecond)
	if ps := r.cli("ps", "-a", "--filter", "label=berth.service=web", "--format", "{{.Names}}"); ps != "" {
		t.Errorf("containers after berth undeploy and 2 keeper rounds: %q", ps)
	}
	if hist := r.cli("history", "web"); !strings.Contains(hist, "undeployed") {
		t.Errorf("history after undeploy:\n%s", hist)
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// rigStoreDir is the directory of the embedded store the rig's daemon
// joins (its berth.toml names it).
func rigStoreDir(t *testing.T, r *proxyRig) string {
	t.Helper()
	b, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`url = "embedded://([^"]+)"`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s names no embedded store", r.config)
	}
	return string(m[1])
}
