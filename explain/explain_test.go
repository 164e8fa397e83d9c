package explain_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/explain"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// containers is a runtime's list, as the runtime reports it.
type containers []runtime.Container

func (c containers) List(context.Context) ([]runtime.Container, error) { return c, nil }

var started = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func id(n byte) string { return strings.Repeat(string('a'+n), 64) }

func instance(n byte, name string, mod func(*records.Instance)) records.Instance {
	in := records.Instance{
		ID: id(n), Name: name, Service: "web", Host: "h1", IP: "10.1.0." + string('1'+n), Port: 80,
		Ports: []records.Port{{Port: 80, Proto: "tcp"}}, Image: "web:1",
		Env:    map[string]string{"VIRTUAL_HOST": name + ".example.com"},
		Health: records.HealthNone, State: records.StateRunning, Weight: 1, StartedAt: started,
	}
	if mod != nil {
		mod(&in)
	}
	return in
}

func running(n byte, name string, mod func(*runtime.Container)) runtime.Container {
	c := runtime.Container{ID: id(n), Name: name, Image: "web:1", State: runtime.StateRunning, Health: runtime.HealthNone, Started: started}
	if mod != nil {
		mod(&c)
	}
	return c
}

// fixture is a real embedded store holding the records of every case,
// the runtime's containers, and an nginx output routing the routed ones.
type fixture struct {
	st   store.Store
	rt   containers
	tmpl []explain.TemplateState
	dir  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: filepath.Join(dir, "store"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ins := []records.Instance{
		instance(0, "routed", nil),
		instance(1, "draining", func(in *records.Instance) { in.State = records.StateDraining }),
		instance(2, "noport", func(in *records.Instance) { in.Port, in.Ports = 0, nil }),
		instance(3, "badhost", func(in *records.Instance) {
			in.Env = map[string]string{}
			in.Invalid = []records.FieldError{{Field: "VIRTUAL_HOST", Value: "bad;host", Reason: `";" is not allowed in a host name`}}
		}),
		instance(4, "unrendered", nil),
		instance(5, "quarantined", nil),
	}
	for _, in := range ins {
		b, _ := json.Marshal(in)
		if _, err := st.Put(t.Context(), records.ServiceKey("", in.Service, in.Host, in.ID), b); err != nil {
			t.Fatal(err)
		}
		cb, _ := json.Marshal(records.Container{ID: in.ID, Name: in.Name})
		if _, err := st.Put(t.Context(), records.ContainerKey("", in.Host, in.ID), cb); err != nil {
			t.Fatal(err)
		}
	}
	rt := containers{
		running(0, "routed", nil),
		running(6, "stopped", func(c *runtime.Container) {
			c.State, c.ExitCode, c.Finished = runtime.StateExited, 137, started.Add(time.Hour)
		}),
		running(7, "created", func(c *runtime.Container) { c.State = runtime.StateCreated }),
		running(8, "ignored", func(c *runtime.Container) { c.Labels = map[string]string{"berth.ignore": "true"} }),
		running(9, "unhealthy", func(c *runtime.Container) { c.Health = runtime.HealthUnhealthy }),
		running(10, "starting", func(c *runtime.Container) { c.Health = runtime.HealthStarting }),
		running(11, "unregistered", nil),
	}
	out := `upstream routed.example.com {
    server 10.1.0.1:80;
}
upstream draining.example.com {
    server 10.1.0.2:80 down;
}
server {
    server_name routed.example.com;
    location / { proxy_pass http://routed.example.com; }
}
`
	dest := filepath.Join(dir, "default.conf")
	if err := os.WriteFile(dest, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	qkey := records.ServiceKey("", "web", "h1", id(5))
	tmpl := []explain.TemplateState{{
		Config:   config.Template{Name: "nginx", Prefixes: []string{records.Root("")}},
		Revision: 12,
		Quarantined: []runner.QuarantinedKey{{Key: qkey, Service: "web", Container: id(5),
			Reason: "nginx -t: host not found in upstream", Since: started}},
	}}
	tmpl[0].Config.Spec.Dest = dest
	return &fixture{st: st, rt: rt, tmpl: tmpl, dir: dir}
}

func (f *fixture) explain(t *testing.T, query string, kind explain.Kind) (explain.Report, error) {
	t.Helper()
	return explain.New(f.st, explain.WithRuntime(f.rt), explain.WithTemplates(f.tmpl)).Explain(t.Context(), query, kind)
}

func golden(t *testing.T, f *fixture, name string, got []byte) {
	t.Helper()
	got = bytes.ReplaceAll(got, []byte(f.dir), []byte("$DIR"))
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", file, got, want)
	}
}

// TestContainerReasons names the right reason for each case of a
// container that is not routed (and none for the routed one).
func TestContainerReasons(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		query  string
		routed bool
		reason string // the first reason's code
	}{
		{"routed", true, ""},
		{"stopped", false, explain.ReasonStopped},
		{"created", false, explain.ReasonNotRunning},
		{"ignored", false, explain.ReasonIgnored},
		{"unhealthy", false, explain.ReasonUnhealthy},
		{"starting", false, explain.ReasonStarting},
		{"unregistered", false, explain.ReasonNotRegistered},
		{"draining", false, explain.ReasonDraining},
		{"noport", false, explain.ReasonNoPort},
		{"badhost", false, explain.ReasonInvalidVirtualHost},
		{"unrendered", false, explain.ReasonNotInOutput},
		{"quarantined", false, explain.ReasonQuarantined},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			rep, err := f.explain(t, c.query, explain.KindAuto)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Kind != explain.KindContainer {
				t.Fatalf("kind %q, want container", rep.Kind)
			}
			cr := rep.Container
			if cr.Routed != c.routed {
				t.Errorf("routed = %v, want %v", cr.Routed, c.routed)
			}
			switch {
			case c.reason == "" && len(cr.Reasons) > 0:
				t.Errorf("reasons %+v, want none", cr.Reasons)
			case c.reason != "" && (len(cr.Reasons) == 0 || cr.Reasons[0].Code != c.reason):
				t.Errorf("reasons %+v, want %s first", cr.Reasons, c.reason)
			}
			var buf bytes.Buffer
			if err := rep.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			golden(t, f, "container-"+c.query+".txt", buf.Bytes())
		})
	}
}

func TestHostAndService(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		query string
		kind  explain.Kind
		want  explain.Kind
	}{
		{"routed.example.com", explain.KindAuto, explain.KindHost},
		{"bad;host", explain.KindHost, explain.KindHost},
		{"web", explain.KindAuto, explain.KindService},
	} {
		rep, err := f.explain(t, c.query, c.kind)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Kind != c.want {
			t.Fatalf("%s: kind %q, want %q", c.query, rep.Kind, c.want)
		}
		var buf bytes.Buffer
		if err := rep.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		golden(t, f, string(c.want)+"-"+strings.ReplaceAll(c.query, ";", "_")+".txt", buf.Bytes())
	}
}

func TestJSON(t *testing.T) {
	f := newFixture(t)
	for _, q := range []string{"badhost", "routed.example.com"} {
		rep, err := f.explain(t, q, explain.KindAuto)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		var back explain.Report
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		golden(t, f, "json-"+q+".json", append(b, '\n'))
	}
}

func TestNotFoundAndAmbiguous(t *testing.T) {
	f := newFixture(t)
	if _, err := f.explain(t, "nothing-here", explain.KindAuto); !errors.Is(err, explain.ErrNotFound) {
		t.Errorf("unknown query: err %v, want ErrNotFound", err)
	}
	if _, err := f.explain(t, "routed", explain.KindService); !errors.Is(err, explain.ErrNotFound) {
		t.Errorf("a container asked as a service: err %v, want ErrNotFound", err)
	}
	// "aaaa" is a prefix of one id only; "" of none.
	if rep, err := f.explain(t, "aaaa", explain.KindContainer); err != nil || rep.Container.ID != id(0) {
		t.Errorf("id prefix: %+v, %v", rep.Container, err)
	}
}

// TestHostileText: a record written by anyone may hold control
// characters; the text report shows them escaped, never sends them.
func TestHostileText(t *testing.T) {
	f := newFixture(t)
	in := instance(12, "evil\x1b[2J", func(in *records.Instance) { in.Env["VIRTUAL_HOST"] = "x.example.com\x1b]0;pwned\x07" })
	b, _ := json.Marshal(in)
	if _, err := f.st.Put(t.Context(), records.ServiceKey("", in.Service, in.Host, in.ID), b); err != nil {
		t.Fatal(err)
	}
	rep, err := f.explain(t, in.ID, explain.KindContainer)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `evil\x1b[2J`) {
		t.Errorf("control characters not escaped:\n%q", out)
	}
}
