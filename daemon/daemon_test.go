package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store/etcd"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// TestMetricsAndHealth runs a daemon without a runtime (a sidecar) against a
// real etcd server, renders from it, then freezes the server: /healthz must
// fail once the store has been failing past StallAfter, the last output must
// stay, and health must come back with the server.
func TestMetricsAndHealth(t *testing.T) {
	cluster := testenv.StartEtcd(t, 1)
	m := cluster.Members[0]
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	st, err := etcd.New(t.Context(), etcd.Config{Endpoints: []string{m.ClientURL}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir := t.TempDir()
	src := filepath.Join(dir, "list.tmpl")
	dest := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(src, []byte(`{{range $k, $v := .Services}}{{$k}} {{len $v}}{{"\n"}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := config.ParseTemplateFlag(src+":"+dest, dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(st, nil, daemon.Config{StallAfter: time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, []config.Template{tmpl}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	h := d.Handler()

	rec := `{"id":"a1","name":"a1","service":"api","host":"h1","ip":"10.0.0.1","port":80,"state":"running"}`
	if _, err := st.Put(t.Context(), "/berth/services/api/h1/a1", []byte(rec)); err != nil {
		t.Fatal(err)
	}
	daemon.Eventually(t, "render", 10*time.Second, func() bool {
		b, _ := os.ReadFile(dest)
		return string(b) == "api 1\n"
	})
	code, body := get(t, h, "/healthz")
	if code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	_, metrics := get(t, h, "/metrics")
	for _, series := range []string{
		`berth_renders_total{outcome="changed",template="` + tmpl.Name + `"}`,
		`berth_render_duration_seconds_count{template="` + tmpl.Name + `"}`,
		`berth_store_request_duration_seconds_count{op="list"}`,
		`berth_template_revision{template="` + tmpl.Name + `"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, series+" ") {
			t.Errorf("/metrics lacks %s", series)
		}
	}

	// The store stops answering: unhealthy after StallAfter, output kept.
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = m.Thaw()
		}
	}()
	var rep daemon.HealthReport
	daemon.Eventually(t, "/healthz failing with the store frozen", 15*time.Second, func() bool {
		code, body := get(t, h, "/healthz")
		_ = json.Unmarshal([]byte(body), &rep)
		return code == http.StatusServiceUnavailable
	})
	if rep.OK || len(rep.Checks) == 0 || rep.Checks[0].Name != "store" || rep.Checks[0].OK || !strings.Contains(rep.Checks[0].Detail, "failing for") {
		t.Errorf("health report: %+v", rep)
	}
	if b, _ := os.ReadFile(dest); string(b) != "api 1\n" {
		t.Errorf("output during the outage: %q", b)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	daemon.Eventually(t, "/healthz back after the thaw", 15*time.Second, func() bool {
		code, _ := get(t, h, "/healthz")
		return code == http.StatusOK
	})
}

// TestHealthDegraded: a template whose check keeps failing leaves the last
// good output in place and, past StallAfter, makes /healthz answer 200 with
// status degraded, naming the template; fixed, health is ok again.
func TestHealthDegraded(t *testing.T) {
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
	dir := t.TempDir()
	good, dest := listTemplate(t, dir, "list")
	bad := good
	bad.Spec.Check = "false"
	d, err := daemon.New(st, nil, daemon.Config{StallAfter: time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, []config.Template{bad}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	h := d.Handler()
	report := func() (int, daemon.HealthReport) {
		code, body := get(t, h, "/healthz")
		var rep daemon.HealthReport
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return code, rep
	}
	var (
		rep  daemon.HealthReport
		code int
	)
	daemon.Eventually(t, "degraded", 15*time.Second, func() bool {
		code, rep = report()
		return rep.Status == daemon.StatusDegraded
	})
	if code != http.StatusOK {
		t.Errorf("/healthz %d while degraded, want 200", code)
	}
	var named bool
	for _, c := range rep.Checks {
		named = named || c.Name == "template "+bad.Name && c.Degraded && strings.Contains(c.Detail, "failing to apply")
	}
	if !named || !rep.OK {
		t.Errorf("degraded report: %+v", rep)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Errorf("%s written although its check fails", dest)
	}
	if err := d.Reload(t.Context(), []config.Template{good}); err != nil {
		t.Fatal(err)
	}
	daemon.Eventually(t, "ok after the fix", 15*time.Second, func() bool {
		code, rep := report()
		return code == http.StatusOK && rep.Status == daemon.StatusOK
	})
}

// TestHealthQuarantined: a record whose value makes the template's check
// fail is quarantined; the others are applied, /healthz says degraded
// (200) naming the key, and /metrics counts it.
func TestHealthQuarantined(t *testing.T) {
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
	tmpl, dest := listTemplate(t, t.TempDir(), "list")
	tmpl.Spec.Check = "sh -c '! grep -q evil {{.src}}'" // the check refuses the "evil" service
	put := func(svc, id string) string {
		key := records.ServiceKey("", svc, "h1", id)
		b, _ := json.Marshal(records.Instance{ID: id, Name: id, Service: svc, Host: "h1", State: records.StateRunning})
		if _, err := st.Put(t.Context(), key, b); err != nil {
			t.Fatal(err)
		}
		return key
	}
	put("web", "c1")
	bad := put("evil", "c2")
	put("api", "c3")
	d, err := daemon.New(st, nil, daemon.Config{StallAfter: time.Minute, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, []config.Template{tmpl}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	h := d.Handler()
	var rep daemon.HealthReport
	daemon.Eventually(t, "degraded by the quarantine", 20*time.Second, func() bool {
		code, body := get(t, h, "/healthz")
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return code == http.StatusOK && rep.Status == daemon.StatusDegraded
	})
	var named bool
	for _, c := range rep.Checks {
		named = named || c.Degraded && strings.Contains(c.Detail, "1 quarantined ("+bad+")")
	}
	if !named {
		t.Errorf("degraded report does not name %s: %+v", bad, rep)
	}
	if b, err := os.ReadFile(dest); err != nil || string(b) != "api 1\nweb 1\n" {
		t.Errorf("%s = %q (%v), want the two good services", dest, b, err)
	}
	_, metrics := get(t, h, "/metrics")
	if want := `berth_quarantined_records{template="` + tmpl.Name + `"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
