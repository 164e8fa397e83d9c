package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
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

// TestWatchSurvivesStoreRestart: berth watch joined to the embedded store
// of another berth process (the owner, as berth up would be) keeps
// rendering across a restart of that process: the store comes back on the
// same address, the watch reconnects, says that it lost and regained the
// store, and renders what is written after the restart.
func TestWatchSurvivesStoreRestart(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sd := t.TempDir()
	epPath := filepath.Join(sd, "store", "endpoint")
	var owners []*testenv.SyncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			for i, b := range owners {
				t.Logf("owner %d:\n%s", i, b.String())
			}
		}
	})
	startOwner := func() *exec.Cmd {
		// kv watch serves the store while it runs, as the daemon would.
		cmd, errb, _ := startBerth(t, self, nil, "kv", "watch", "--state-dir", sd, "--store-create", "/owner/")
		owners = append(owners, errb)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if code, _, _ := run(t, t.Context(), "", "kv", "put", "--state-dir", sd, "/owner/up", "1"); code == 0 {
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatal("the owner's store does not answer")
			}
		}
	}
	stopOwner := func(cmd *exec.Cmd) {
		cmd.Process.Signal(syscall.SIGTERM)
		for deadline := time.Now().Add(30 * time.Second); syscall.Kill(cmd.Process.Pid, 0) == nil; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the owner does not stop")
			}
		}
	}
	owner := startOwner()
	ep, _ := os.ReadFile(epPath)
	if code, _, errs := run(t, t.Context(), "", "kv", "put", "--state-dir", sd, "/app/port", "8080"); code != 0 {
		t.Fatal(errs)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.tmpl"), []byte(`listen {{ key "/app/port" }}`), 0o644)
	dest, conf := filepath.Join(dir, "app.out"), writeBerthToml(t, dir, "app")
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"watch", "--state-dir", sd, "--config", conf}, strings.NewReader(""), &out, &errb)
	}()
	defer func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("berth watch:\n%s", errb.String())
		}
	}()
	waitForFile(t, dest, "listen 8080")

	stopOwner(owner)
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(errb.String(), "store connection lost"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the watch does not say it lost the store:\n%s", errb.String())
		}
	}
	startOwner()
	if again, _ := os.ReadFile(epPath); string(again) != string(ep) {
		t.Fatalf("the store moved: %q, then %q", ep, again)
	}
	if code, _, errs := run(t, t.Context(), "", "kv", "put", "--state-dir", sd, "/app/port", "9090"); code != 0 {
		t.Fatal(errs)
	}
	waitForFile(t, dest, "listen 9090")
	if !strings.Contains(errb.String(), "store connection back") {
		t.Errorf("the watch does not say the store is back:\n%s", errb.String())
	}
	select {
	case code := <-done:
		t.Fatalf("watch exited %d: %s", code, errb.String())
	default:
	}
}
