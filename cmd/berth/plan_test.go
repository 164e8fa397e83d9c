package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/explain"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
)

// templater serves a fixed set of templates as a daemon's API does.
type templater []config.Template

func (t templater) Templates(context.Context) ([]explain.TemplateState, error) {
	return explain.States(t, nil), nil
}

// serveTemplates serves GET /v1/templates on a unix socket of the test's
// and returns the socket.
func serveTemplates(t *testing.T, ts []config.Template) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "berth.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = api.NewDeployServer(nil, api.WithTemplates(templater(ts))).Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

// TestPlanExitCodes: 0 when nothing would change, 2 when something would
// (with the diff and the reload it would run, nothing run or written), 1
// on any error; the templates are the daemon's when none are named.
func TestPlanExitCodes(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	dest := filepath.Join(dir, "upstreams.conf")
	reloadLog := filepath.Join(dir, "reload.log")
	spec := fixture("upstreams.tmpl") + ":" + dest + ":echo reload >> " + reloadLog
	changed := filepath.Join(dir, "changed.json")
	os.WriteFile(changed, []byte(strings.Replace(readFile(t, fixture("native.json")), `"16m"`, `"32m"`, 1)), 0o644)
	if code, _, errs := run(t, ctx, "", "render", "--template", spec, "--context", fixture("native.json")); code != 0 {
		t.Fatalf("render: exit %d: %s", code, errs)
	}
	before := readFile(t, dest)
	broken := filepath.Join(dir, "broken.tmpl")
	os.WriteFile(broken, []byte("{{ range .Services }}\n"), 0o644)
	os.Remove(reloadLog)

	daemonTemplate, err := config.ParseTemplateFlag(spec, dialect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	daemonTemplate.Name = "upstreams"
	sock := serveTemplates(t, []config.Template{daemonTemplate})

	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"nothing would change", []string{"--template", spec, "--context", fixture("native.json")}, 0, nil},
		{"something would", []string{"--template", spec, "--context", changed}, exitChanges,
			[]string{"+client_max_body_size 32m;", "would reload with: echo reload >> " + reloadLog}},
		{"the daemon's templates", []string{"-H", sock, "--context", changed}, exitChanges,
			[]string{"+client_max_body_size 32m;", ": would reload with: echo reload"}},
		{"the daemon's, unchanged", []string{"-H", sock, "--context", fixture("native.json")}, 0, nil},
		{"a template that does not parse", []string{"--template", broken + ":" + filepath.Join(dir, "x"), "--context", changed}, exitFailure, nil},
		{"no daemon to ask", []string{"-H", filepath.Join(dir, "none.sock"), "--context", changed}, exitFailure, nil},
		{"a bad flag", []string{"--no-such-flag"}, exitFailure, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, ctx, "", append([]string{"plan"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			if tc.code == 0 && out != "" {
				t.Errorf("nothing would change, yet stdout:\n%s", out)
			}
		})
	}
	if got := readFile(t, dest); got != before {
		t.Error("plan wrote the destination")
	}
	if _, err := os.Stat(reloadLog); err == nil {
		t.Error("plan ran the reload")
	}
}

// TestContextDump prints the dot a template receives, with the names the
// template uses; its keys fed back with --context render the same output.
func TestContextDump(t *testing.T) {
	ctx := t.Context()
	t.Setenv("BERTH_DUMP_TEST", "seen")
	code, out, errs := run(t, ctx, "", "render", "--context-dump", "--template", fixture("upstreams.tmpl"), "--context", fixture("native.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var dumps []map[string]any
	if err := json.Unmarshal([]byte(out), &dumps); err != nil || len(dumps) != 1 {
		t.Fatalf("%v: %d dumps\n%s", err, len(dumps), out)
	}
	dot := dumps[0]["dot"].(map[string]any)
	env, _ := dot["Env"].(map[string]any)
	if env["BERTH_DUMP_TEST"] != "seen" {
		t.Errorf("dot.Env lacks the process environment: %v", env["BERTH_DUMP_TEST"])
	}
	dot["Env"] = "(the process environment)" // not the same from run to run
	dumps[0]["template"] = "upstreams.tmpl"
	b, _ := json.MarshalIndent(dumps, "", "  ")
	golden(t, "context-dump.golden", string(b)+"\n")

	// The keys are a fixture: rendering from them gives the same output.
	keys, _ := json.Marshal(dumps[0]["keys"])
	fx := filepath.Join(t.TempDir(), "fixture.json")
	os.WriteFile(fx, keys, 0o644)
	_, want, _ := run(t, ctx, "", "render", "--stdout", "--template", fixture("upstreams.tmpl"), "--context", fixture("native.json"))
	code, got, errs := run(t, ctx, "", "render", "--stdout", "--template", fixture("upstreams.tmpl"), "--context", fx)
	if code != 0 || got != want || want == "" {
		t.Errorf("from the dumped keys: exit %d (%s)\n%s\nwant\n%s", code, errs, got, want)
	}
	f, err := render.ReadFixture(fx)
	if err != nil || len(f.KVs) == 0 {
		t.Errorf("dumped keys as a fixture: %v, %d keys", err, len(f.KVs))
	}
}
