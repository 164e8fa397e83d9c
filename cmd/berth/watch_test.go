package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store/backend"
)

// watchSetup serves an embedded store, writes /app/port, and returns the
// state-dir flag and a directory with an app.tmpl.
func watchSetup(t *testing.T) (stateFlag, dir string) {
	t.Helper()
	sd := startEmbedded(t)
	st, err := backend.Open(t.Context(), "", backend.WithStateDir(sd))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Put(t.Context(), "/app/port", []byte("8080")); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.tmpl"), []byte(`listen {{ key "/app/port" }}`), 0o644)
	os.WriteFile(filepath.Join(dir, "other.tmpl"), []byte(`keys {{ len (tree "/app/") }}`), 0o644)
	return "--state-dir=" + sd, dir
}

func writeBerthToml(t *testing.T, dir string, templates ...string) string {
	t.Helper()
	var b strings.Builder
	for _, name := range templates {
		fmt.Fprintf(&b, "[[template]]\nname = %q\nsrc = %q\ndest = %q\nprefixes = [\"/app/\"]\n\n",
			name, name+".tmpl", filepath.Join(dir, name+".out"))
	}
	p := filepath.Join(dir, "berth.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitForFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got, _ := os.ReadFile(path); string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			got, _ := os.ReadFile(path)
			t.Fatalf("%s = %q, want %q", path, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchReloadsOnSIGHUP runs berth watch, adds a template to its
// configuration, sends SIGHUP, and stops it as SIGTERM would.
func TestWatchReloadsOnSIGHUP(t *testing.T) {
	sd, dir := watchSetup(t)
	conf := writeBerthToml(t, dir, "app")
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"watch", sd, "--config", conf}, strings.NewReader(""), &out, &errb)
	}()
	waitForFile(t, filepath.Join(dir, "app.out"), "listen 8080")

	writeBerthToml(t, dir, "app", "other")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitForFile(t, filepath.Join(dir, "other.out"), "keys 1")

	// A broken configuration on SIGHUP is refused; the running one stays.
	os.WriteFile(conf, []byte("[[template]]\nname = \"x\"\nbogus = 1\n"), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "configuration reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload failure logged: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(errb.String(), "berth.toml:3") {
		t.Fatalf("reload failure does not name file:line: %s", errb.String())
	}

	cancel() // what SIGTERM does through main's signal context
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("watch exited %d: %s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not stop")
	}
}

func TestWatchOnce(t *testing.T) {
	sd, dir := watchSetup(t)
	conf := writeBerthToml(t, dir, "app")
	code, _, errs := run(t, t.Context(), "", "watch", sd, "--config", conf, "--once")
	if code != 0 {
		t.Fatalf("--once exited %d: %s", code, errs)
	}
	waitForFile(t, filepath.Join(dir, "app.out"), "listen 8080")

	// A failing check: exit 1, the destination keeps its content.
	var b bytes.Buffer
	b.WriteString(`[[template]]
name = "app"
src = "app.tmpl"
dest = "` + filepath.Join(dir, "app.out") + `"
prefixes = ["/app/"]
check = "echo refusing {{.src}}; exit 3"
`)
	os.WriteFile(filepath.Join(dir, "app.tmpl"), []byte(`port {{ key "/app/port" }}`), 0o644)
	os.WriteFile(conf, b.Bytes(), 0o644)
	code, _, errs = run(t, t.Context(), "", "watch", sd, "--config", conf, "--once")
	if code != 1 || !strings.Contains(errs, "refusing") {
		t.Fatalf("--once with a failing check: exit %d, stderr %s", code, errs)
	}
	waitForFile(t, filepath.Join(dir, "app.out"), "listen 8080")

	code, _, errs = run(t, t.Context(), "", "watch", sd, "--once")
	if code != 2 || !strings.Contains(errs, "no templates") {
		t.Fatalf("no templates: exit %d, %s", code, errs)
	}
}
