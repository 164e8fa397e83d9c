package status_test

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthd/berth/cluster"
	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/status"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func kv(t *testing.T, key string, rev store.Revision, v any) store.KV {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	return store.KV{Key: key, Value: b, ModRevision: rev}
}

func instance(id, name, svc string, mod func(*records.Instance)) records.Instance {
	in := records.Instance{ID: id, Name: name, Service: svc, Host: "h1", IP: "10.0.0." + id[len(id)-1:], Port: 8080,
		Image: "web:1", Env: map[string]string{"VIRTUAL_HOST": svc + ".example.com"}, Health: records.HealthNone,
		State: records.StateRunning, Weight: 1, StartedAt: t0.Add(-time.Hour)}
	if mod != nil {
		mod(&in)
	}
	return in
}

// richInput has one instance in every state, every reason an instance is
// not routable, a container with its records, hostile and broken values.
func richInput(t *testing.T) status.Input {
	p := records.DefaultPrefix
	svcKey := func(svc, id string) string { return records.ServiceKey(p, svc, "h1", id) }
	recs := []store.KV{
		kv(t, records.HostKey(p, "h1"), 2, records.Host{Name: "h1", Version: "v1.2.3", StartedAt: t0.Add(-2 * time.Hour)}),
		kv(t, records.ContainerKey(p, "h1", "c1"), 10, records.Container{ID: "c1", Name: "/web-1", Image: records.DockerImage{Repository: "web", Tag: "1"},
			IP: "10.0.0.1", State: records.ContainerState{Running: true}, Env: map[string]string{"VIRTUAL_HOST": "web.example.com", "DB_PASSWORD": "secret"},
			Labels:    map[string]string{"berth.service": "web"},
			Addresses: []records.Address{{IP: "10.0.0.1", Port: "8080", Proto: "tcp"}}}),
		kv(t, records.ContainerKey(p, "h1", "c9"), 11, []byte("{not json")),
		kv(t, svcKey("web", "c1"), 10, instance("c1", "web-1", "web", nil)),
		kv(t, svcKey("web", "c2"), 12, instance("c2", "web-2", "web", func(i *records.Instance) { i.Health = records.HealthHealthy })),
		kv(t, svcKey("web", "c3"), 13, instance("c3", "web-3", "web", func(i *records.Instance) { i.Health = records.HealthUnhealthy })),
		kv(t, svcKey("web", "c4"), 14, instance("c4", "web-4", "web", func(i *records.Instance) { i.Health = records.HealthStarting })),
		kv(t, svcKey("web", "c5"), 15, instance("c5", "web-5", "web", func(i *records.Instance) { i.State = records.StateDraining })),
		kv(t, svcKey("web", "c6"), 16, instance("c6", "<script>alert(1)</script>", "web", func(i *records.Instance) {
			i.Invalid = []records.FieldError{{Field: "VIRTUAL_HOST", Value: "a;b", Reason: `";" is not allowed in a host name`}}
			i.Env = nil
		})),
		kv(t, svcKey("api", "c7"), 17, instance("c7", "api-1", "api", func(i *records.Instance) { i.IP = "" })),
		kv(t, svcKey("api", "c8"), 18, instance("c8", "api-2", "api", nil)),
		kv(t, p+"/elsewhere/x", 19, []byte("{}")),
		kv(t, records.DeploymentKey(p, "web", 1), 20, []byte("{}")), // read through package deploy, not here
	}
	tmpl := runner.TemplateStatus{Name: "nginx", Dest: "/etc/nginx/nginx.conf", Synced: true, Revision: 18,
		LastRender: t0.Add(-time.Minute), LastChange: t0.Add(-2 * time.Minute), Renders: 4, Failures: 1,
		Quarantined: []runner.QuarantinedKey{{Key: svcKey("api", "c8"), Service: "api", Container: "c8", Reason: `check "nginx -t": exit status 1`, Since: t0.Add(-30 * time.Second)}},
		Mirrors:     []watcher.Health{{Prefix: "/berth/services/", Synced: true, Revision: 18}}}
	broken := runner.TemplateStatus{Name: "broken", Dest: "/tmp/broken", LastError: errors.New("broken.tmpl:3: unexpected EOF"), FailingSince: t0.Add(-time.Hour)}
	return status.Input{
		Now: t0, Host: "h1", Version: "v1.2.3", Records: recs, Revision: 20, Synced: true,
		Health:    status.Health{Status: "degraded", Checks: []status.Check{{Name: "store", OK: true}, {Name: "template nginx", OK: true, Degraded: true, Detail: "1 quarantined"}}},
		Templates: []runner.TemplateStatus{tmpl, broken},
		Renders: map[string]status.Render{"nginx": {At: t0.Add(-time.Minute), Revision: 18, Outcome: "changed",
			Phases: status.Phases{Cycle: 40 * time.Millisecond, Commands: 30 * time.Millisecond, QuarantineRuns: 2},
			Check:  &status.Command{At: t0.Add(-time.Minute), Line: "nginx -t", OK: true},
			Reload: &status.Command{At: t0.Add(-time.Minute), Line: "nginx -s reload", OK: true},
			Diff:   "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n", ChangedAt: t0.Add(-time.Minute)}},
		Store: status.Store{Backend: "embedded", Endpoint: "embedded:///var/lib/berth/store", Healthy: true, WatchLag: 2 * time.Millisecond, WatchLagSamples: 7,
			Watches: []status.Watch{{Prefix: "/berth/", Synced: true, Revision: 20}},
			Catalog: &status.Catalog{Agent: "127.0.0.1:8500", Services: 7, Failing: true, FailingSince: t0.Add(-time.Minute), Error: "list the agent's services: connection refused",
				Refused: []status.Refusal{{ID: "d1", Name: "db-1", Reason: `the ACL token lacks service:write on "db"`}, {ID: "c1", Reason: `the ACL token lacks service:write on "web"`}}}},
		Members: []cluster.MemberInfo{{ID: 2, Name: "h2", PeerURL: "https://10.1.0.2:2381", Started: true}, {ID: 1, Name: "h1", PeerURL: "https://10.1.0.1:2381", Started: true, Leader: true, Self: true}},
		Deploys: map[string][]deploy.Revision{"web": {
			{Service: "web", Number: 1, Image: "web:1", Outcome: deploy.OutcomeSucceeded, Started: t0.Add(-time.Hour)},
			{Service: "web", Number: 2, Image: "web:2", Outcome: deploy.OutcomeFailed, Reason: "web-2-1 exited", Started: t0.Add(-time.Minute)},
		}},
	}
}

func TestBuildGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   status.Input
	}{
		{"empty", status.Input{Now: t0, Host: "h1"}},
		{"rich", richInput(t)},
		{"members-error", status.Input{Now: t0, Host: "h1", MembersErr: errors.New("list members: context deadline exceeded")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.MarshalIndent(status.Build(tc.in), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("view differs from %s (run with -update to accept):\n%s", golden, got)
			}
		})
	}
}

// TestInstanceStates pins each instance's state, routability and the
// first reason given, the facts the page and explain rely on.
func TestInstanceStates(t *testing.T) {
	v := status.Build(richInput(t))
	type want struct {
		state    string
		routable bool
		reason   string
	}
	wants := map[string]want{
		"web-1":                     {status.StateRunning, true, ""},
		"web-2":                     {status.StateHealthy, true, ""},
		"web-3":                     {status.StateUnhealthy, false, "unhealthy: its health check fails"},
		"web-4":                     {status.StateStarting, false, "starting: its health check has not passed yet"},
		"web-5":                     {status.StateDraining, false, "draining: stopped, takes no new connections, leaves after the drain period"},
		"<script>alert(1)</script>": {status.StateRunning, true, `left out of the record: VIRTUAL_HOST="a;b": ";" is not allowed in a host name`},
		"api-1":                     {status.StateRunning, false, "no address: the container has no IP or no port, so no proxy can reach it"},
		"api-2":                     {status.StateQuarantined, false, `quarantined from template nginx: check "nginx -t": exit status 1`},
	}
	n := 0
	for _, s := range v.Services {
		for _, in := range s.Instances {
			n++
			w, ok := wants[in.Name]
			if !ok {
				t.Errorf("unexpected instance %q", in.Name)
				continue
			}
			first := ""
			if len(in.Reasons) > 0 {
				first = in.Reasons[0]
			}
			if in.State != w.state || in.Routable != w.routable || first != w.reason {
				t.Errorf("%s: state %s routable %v reason %q, want %s %v %q", in.Name, in.State, in.Routable, first, w.state, w.routable, w.reason)
			}
		}
	}
	if n != len(wants) {
		t.Errorf("%d instances, want %d", n, len(wants))
	}
	if len(v.Problems) != 2 {
		t.Errorf("problems %q, want the broken container record and the key outside the schema", v.Problems)
	}
	if len(v.Containers) != 1 || v.Containers[0].Env["DB_PASSWORD"] != "" || len(v.Containers[0].Records) != 1 {
		t.Errorf("containers %+v: want web-1 with its one record and without DB_PASSWORD", v.Containers)
	}
}
