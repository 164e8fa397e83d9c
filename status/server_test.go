package status_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/status"
)

func TestAuthAndReadOnly(t *testing.T) {
	gather := func(context.Context) status.Input { return status.Input{Now: t0, Host: "h1"} }
	for _, tc := range []struct {
		name string
		auth status.Auth
		set  func(*http.Request)
		want int
	}{
		{"open", status.Auth{}, nil, 200},
		{"token missing", status.Auth{Token: "s3cret"}, nil, 401},
		{"bearer", status.Auth{Token: "s3cret"}, func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, 200},
		{"bearer wrong", status.Auth{Token: "s3cret"}, func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, 401},
		{"token as basic password", status.Auth{Token: "s3cret"}, func(r *http.Request) { r.SetBasicAuth("anyone", "s3cret") }, 200},
		{"basic", status.Auth{User: "ops", Password: "pw"}, func(r *http.Request) { r.SetBasicAuth("ops", "pw") }, 200},
		{"basic wrong user", status.Auth{User: "ops", Password: "pw"}, func(r *http.Request) { r.SetBasicAuth("root", "pw") }, 401},
		{"basic empty password", status.Auth{User: "ops", Password: "pw"}, func(r *http.Request) { r.SetBasicAuth("ops", "") }, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(status.NewServer(gather, status.WithAuth(tc.auth)).Handler())
			defer srv.Close()
			for _, path := range []string{"/", "/api/v1/status", "/api/v1/services"} {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
				if tc.set != nil {
					tc.set(req)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, tc.want)
				}
				if tc.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("GET %s: 401 without WWW-Authenticate", path)
				}
			}
		})
	}

	srv := httptest.NewServer(status.NewServer(gather).Handler())
	defer srv.Close()
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, srv.URL+"/api/v1/status", strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s /api/v1/status: %d, want 405", m, resp.StatusCode)
		}
	}
	resp, err := http.Get(srv.URL + "/api/v1/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown view: %d, want 404", resp.StatusCode)
	}
	resp, err = http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("page CSP %q: want default-src 'none' and the script's hash", csp)
	}
}

// TestEvents reads the event stream: the view at connect, then a new one
// after a trigger.
func TestEvents(t *testing.T) {
	host := make(chan string, 1)
	host <- "first"
	cur := "first"
	gather := func(context.Context) status.Input {
		select {
		case cur = <-host:
		default:
		}
		return status.Input{Now: time.Now(), Host: cur}
	}
	trig := make(chan struct{}, 1)
	s := status.NewServer(gather, status.WithTriggers(trig), status.WithRefresh(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.Run(ctx)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	next := func() status.View {
		t.Helper()
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var v status.View
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return status.View{}
	}
	if v := next(); v.Host != "first" {
		t.Fatalf("first event host %q", v.Host)
	}
	host <- "second"
	trig <- struct{}{}
	if v := next(); v.Host != "second" {
		t.Fatalf("event after the trigger: host %q, want second", v.Host)
	}
}

// TestRenders folds observations: the diff of a change against the
// version seen before, the failed check's output, the phases.
func TestRenders(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out.conf")
	if err := os.WriteFile(dest, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := status.NewRenders()
	r.Track([]config.Template{{Name: "t", Spec: render.Spec{Dest: dest, Check: "check {{.src}}", Reload: "reload"}}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	wait := func() status.Render {
		t.Helper()
		select {
		case <-r.Changed():
		case <-time.After(5 * time.Second):
			t.Fatal("no change recorded")
		}
		return r.Snapshot()["t"]
	}

	if err := os.WriteFile(dest, []byte("a\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Observe(runner.Observation{Template: "t", Revision: 7, Took: time.Millisecond,
		Result: render.Result{Name: "t", Dest: dest, Changed: true, Reloaded: true, Cost: 500 * time.Microsecond}})
	got := wait()
	if got.Outcome != "changed" || got.Revision != 7 || !strings.Contains(got.Diff, "-b\n+c\n") || got.Phases.Commands != 500*time.Microsecond {
		t.Errorf("after a change: %+v", got)
	}
	if got.Check == nil || !got.Check.OK || got.Reload == nil || !got.Reload.OK || got.Reload.Line != "reload" {
		t.Errorf("commands after a change: check %+v reload %+v", got.Check, got.Reload)
	}

	ce := &render.CommandError{What: "check", Line: "check /tmp/x", Err: errors.New("exit status 1"), Output: "line 3: bad"}
	r.Observe(runner.Observation{Template: "t", Revision: 8, Result: render.Result{Name: "t", Dest: dest, Err: fmt.Errorf("t: %w", ce)}})
	got = wait()
	if got.Outcome != "failed" || got.Check == nil || got.Check.OK || got.Check.Output != "line 3: bad" || got.Check.Line != "check /tmp/x" {
		t.Errorf("after a failed check: %+v check %+v", got, got.Check)
	}
	if !strings.Contains(got.Diff, "+c") {
		t.Errorf("the last change's diff is gone after a failure: %q", got.Diff)
	}
}
