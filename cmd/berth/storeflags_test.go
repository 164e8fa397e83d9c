package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/store/etcd"
)

// TestStoreCommandsNeverCreate: kv, render and watch without a running
// daemon or an existing store fail (exit 1), naming the directory they
// looked at, and create nothing; a bad embedded URL is a usage error;
// --store-create creates the store.
func TestStoreCommandsNeverCreate(t *testing.T) {
	base := t.TempDir()
	sd := filepath.Join(base, "state")
	typo := filepath.Join(base, "typo")
	tmpl := filepath.Join(base, "app.tmpl")
	if err := os.WriteFile(tmpl, []byte(`{{ key "/app/port" }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(base, "app.out")
	for _, tc := range []struct {
		name string
		env  string // BERTH_STATE_DIR
		args []string
		code int
		want string
	}{
		{"kv ls", "", []string{"kv", "ls", "--state-dir", sd}, 1, "no embedded store at " + filepath.Join(sd, "store")},
		{"kv put", "", []string{"kv", "put", "--state-dir", sd, "/k", "v"}, 1, "no embedded store at " + filepath.Join(sd, "store")},
		{"kv ls BERTH_STATE_DIR", sd, []string{"kv", "ls"}, 1, "no embedded store at " + filepath.Join(sd, "store")},
		{"render", "", []string{"render", "--state-dir", sd, "--template", tmpl + ":" + dest}, 1, "no embedded store at " + filepath.Join(sd, "store")},
		{"watch", "", []string{"watch", "--state-dir", sd, "--template", tmpl + ":" + dest}, 1, "no embedded store at " + filepath.Join(sd, "store")},
		{"watch --once", "", []string{"watch", "--once", "--state-dir", sd, "--template", tmpl + ":" + dest}, 1, "no embedded store at " + filepath.Join(sd, "store")},
		{"embedded typo", "", []string{"kv", "ls", "--store", "embedded://" + typo}, 1, "no embedded store at " + typo},
		{"embedded without a path", "", []string{"kv", "ls", "--store", "embedded://"}, 2, `bad store URL "embedded://": no path`},
		{"the hint", "", []string{"kv", "ls", "--state-dir", sd}, 1, "--store-create"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("BERTH_STATE_DIR", tc.env)
			code, out, errs := run(t, t.Context(), "", tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d naming %q (stdout %q)", code, errs, tc.code, tc.want, out)
			}
		})
	}
	for _, p := range []string{sd, typo, dest} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s was created (%v)", p, err)
		}
	}

	if code, _, errs := run(t, t.Context(), "", "kv", "put", "--state-dir", sd, "--store-create", "/k", "v"); code != 0 {
		t.Fatalf("put --store-create: exit %d: %s", code, errs)
	}
	// Nobody serves it now: kv says so, and serves it when asked to.
	if code, _, errs := run(t, t.Context(), "", "kv", "get", "--state-dir", sd, "/k"); code != 1 ||
		!strings.Contains(errs, "no process serves it") || !strings.Contains(errs, "--store-serve") {
		t.Fatalf("kv get without a server: exit %d, stderr %q", code, errs)
	}
	if code, out, errs := run(t, t.Context(), "", "kv", "get", "--state-dir", sd, "--store-serve", "/k"); code != 0 || out != "v\n" {
		t.Fatalf("the created store, served by kv get --store-serve: exit %d %q %s", code, out, errs)
	}
}

// serveInfo serves the daemon API's GET /v1/info, reporting info, on a
// socket in a temp dir, as berth up does.
func serveInfo(t *testing.T, info api.Info) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "berth.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(nil, api.WithInfo(info)).Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

// TestStoreCommandsUseTheDaemonsStore: -H or BERTH_HOST naming a daemon's
// socket makes kv use that daemon's store (its state dir, or the store URL
// it reports); --state-dir wins over -H; a socket where no daemon answers
// is an error naming it.
func TestStoreCommandsUseTheDaemonsStore(t *testing.T) {
	sd := startEmbedded(t)
	other := t.TempDir()
	otherStore, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: filepath.Join(other, "elsewhere")})
	if err != nil {
		t.Fatal(err)
	}
	defer otherStore.Close()
	if _, err := otherStore.Put(t.Context(), "/which", []byte("elsewhere")); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(t, t.Context(), "", "kv", "put", "--state-dir", sd, "/which", "state dir"); code != 0 {
		t.Fatal(errs)
	}
	byStateDir := serveInfo(t, api.Info{StateDir: sd})
	byURL := serveInfo(t, api.Info{StateDir: other, Store: "embedded://" + filepath.Join(other, "elsewhere")})
	nothing := filepath.Join(t.TempDir(), "stale.sock")
	if ln, err := net.Listen("unix", nothing); err == nil {
		ln.Close() // leaves nothing listening; the file may stay
	}

	for _, tc := range []struct {
		name, host string
		args       []string
		code       int
		want       string
	}{
		{"-H", "", []string{"kv", "get", "-H", byStateDir, "/which"}, 0, "state dir\n"},
		{"BERTH_HOST", byStateDir, []string{"kv", "get", "/which"}, 0, "state dir\n"},
		{"the daemon's store URL", "", []string{"kv", "get", "-H", byURL, "/which"}, 0, "elsewhere\n"},
		{"--state-dir wins over -H", "", []string{"kv", "get", "-H", byURL, "--state-dir", sd, "/which"}, 0, "state dir\n"},
		{"-H wins over BERTH_HOST", byURL, []string{"kv", "get", "-H", byStateDir, "/which"}, 0, "state dir\n"},
		{"no daemon at -H", "", []string{"kv", "get", "-H", nothing, "/which"}, 1, nothing},
		{"no daemon at BERTH_HOST", nothing, []string{"kv", "ls"}, 1, nothing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("BERTH_HOST", tc.host)
			t.Setenv("BERTH_STATE_DIR", "")
			code, out, errs := run(t, t.Context(), "", tc.args...)
			if code != tc.code || (tc.code == 0 && out != tc.want) || (tc.code != 0 && !strings.Contains(errs, tc.want)) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d with %q", code, out, errs, tc.code, tc.want)
			}
		})
	}
}

// nobodyBinary copies this test binary where nobody may run it (its
// directory and parents 0755) and returns its path and directory.
func nobodyBinary(t *testing.T) (bin, dir string) {
	t.Helper()
	dir = t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "berth")
	if data, err := os.ReadFile(self); err != nil || os.WriteFile(bin, data, 0o755) != nil {
		t.Fatalf("copy %s: %v", self, err)
	}
	return bin, dir
}

// TestStoreCommandsAsNobody: an unprivileged user running kv, render or
// watch beside a root daemon's embedded store gets a clear error naming
// the file it cannot read and what to do, and no store of its own.
func TestStoreCommandsAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to run berth as nobody")
	}
	bin, dir := nobodyBinary(t)
	sd := filepath.Join(dir, "state")
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: filepath.Join(sd, "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	os.Chmod(sd, 0o755)
	tmpl := filepath.Join(dir, "app.tmpl")
	os.WriteFile(tmpl, []byte(`{{ key "/app/port" }}`), 0o644)
	for _, args := range [][]string{
		{"kv", "ls", "--state-dir", sd},
		{"kv", "put", "--state-dir", sd, "/berth/services/evil", "x"},
		{"kv", "put", "--state-dir", sd, "--store-create", "/berth/services/evil", "x"},
		{"render", "--state-dir", sd, "--stdout", "--template", tmpl},
		{"watch", "--once", "--state-dir", sd, "--template", tmpl + ":" + filepath.Join(dir, "out")},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, args...)
			cmd.Env = append(os.Environ(), "BERTH_TEST_EXEC=1")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("%v as nobody: %v, want exit 1:\n%s", args, err, out)
			}
			for _, want := range []string{"cannot read " + filepath.Join(sd, "store") + "/", "permission denied", "run the command as root", "uid 65534"} {
				if !strings.Contains(string(out), want) {
					t.Fatalf("%v as nobody: the error lacks %q:\n%s", args, want, out)
				}
			}
		})
	}
	if _, err := st.Get(t.Context(), "/berth/services/evil"); err == nil {
		t.Fatal("nobody wrote a key")
	}
}

// TestStoreCommandsFollowTheDaemonsStoreURL: a daemon (berth up) whose
// store is outside its state directory says so on GET /v1/info, so kv and
// render with -H (or BERTH_HOST) use that store, not an embedded one under
// the state directory.
func TestStoreCommandsFollowTheDaemonsStoreURL(t *testing.T) {
	storeURL := "embedded://" + filepath.Join(t.TempDir(), "elsewhere")
	sock := startDaemonWith(t, "--store", storeURL, "--hostname", "edge-x")
	info, err := api.NewClient(sock).Info(t.Context())
	if err != nil || info.Store != storeURL {
		t.Fatalf("GET /v1/info: %+v %v, want store %s", info, err, storeURL)
	}
	t.Setenv("BERTH_STATE_DIR", "")
	ctx := t.Context()
	if code, _, errs := run(t, ctx, "", "kv", "put", "-H", sock, "/berth/config/which", "the daemon's"); code != 0 {
		t.Fatalf("kv put -H: exit %d: %s", code, errs)
	}
	if code, out, errs := run(t, ctx, "", "kv", "get", "--store", storeURL, "/berth/config/which"); code != 0 || out != "the daemon's\n" {
		t.Fatalf("the key is not in the daemon's store: exit %d %q %s", code, out, errs)
	}
	// The daemon's own records are there too: its host key.
	if code, out, errs := run(t, ctx, "", "kv", "ls", "-H", sock, "/berth/hosts/"); code != 0 || !strings.Contains(out, "/berth/hosts/edge-x") {
		t.Errorf("kv ls -H of the daemon's host record: exit %d %q %s", code, out, errs)
	}
	tmpl := filepath.Join(t.TempDir(), "which.tmpl")
	if err := os.WriteFile(tmpl, []byte(`{{ key "/berth/config/which" }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BERTH_HOST", sock)
	if code, out, errs := run(t, ctx, "", "render", "--stdout", "--template", tmpl); code != 0 || out != "the daemon's" {
		t.Errorf("render with BERTH_HOST: exit %d %q %s", code, out, errs)
	}
}
