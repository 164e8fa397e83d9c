package embedded_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

// buildInitBinary builds the companion container init the way make build
// does (same tags, so same build information as this test binary).
func buildInitBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), embedded.InitBinaryName)
	cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", out, "./containerinit/cmd/berth-init")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", embedded.InitBinaryName, err, b)
	}
	return out
}

// holdsInitMemfd tells whether this process has the sealed memfd the
// container init's C constructor looks for.
func holdsInitMemfd(t *testing.T) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == "/memfd:"+embedded.InitBinaryName+" (deleted)" {
			return true
		}
	}
	return false
}

// TestInitBinary runs containers whose init is handed over to the
// companion binary: confinement (seccomp needs the companion built with
// the seccomp tag), exit codes and exec (libcontainer's setns init) work
// as with the self re-exec. An incompatible or missing companion given
// explicitly is an error.
func TestInitBinary(t *testing.T) {
	bin := buildInitBinary(t)
	env := embeddedtest.NewEnv(t)
	r := embeddedtest.NewRuntime(t, env.With(embedded.WithInitBinary(bin)))
	importBusybox(t, r)
	ctx := context.Background()
	if !holdsInitMemfd(t) {
		t.Fatal("the runtime holds no berth-init memfd for container inits to re-execute from")
	}

	c, out := runOutput(t, r, runtime.Spec{Image: "busybox:test", Cmd: []string{"sh", "-c",
		"echo pid=$$; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; exit 7"}})
	if c.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", c.ExitCode)
	}
	for _, want := range []string{"pid=1\n", "NoNewPrivs:\t1\n", "Seccomp:\t2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}

	c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"sleep", "60"}})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var stdout bytes.Buffer
	code, err := r.Exec(ctx, c.ID, embedded.ExecOptions{Cmd: []string{"sh", "-c", "cat /proc/1/cmdline; exit 3"}, Stdout: &stdout})
	if err != nil || code != 3 || stdout.String() != "sleep\x0060\x00" {
		t.Errorf("exec: code %d, err %v, output %q; want 3, nil, sleep 60", code, err, stdout.String())
	}

	for name, path := range map[string]string{"not a Go binary": fx.Busybox + "/bin/busybox", "missing": bin + ".missing"} {
		e := embeddedtest.NewEnv(t)
		if rt, err := embedded.New(ctx, e.With(embedded.WithInitBinary(path)).Options()...); err == nil {
			_ = rt.Close()
			_ = rt.Network().RemoveBridge()
			t.Errorf("%s companion %s: New succeeded", name, path)
		} else if !strings.Contains(err.Error(), path) {
			t.Errorf("%s companion: error %q does not name %s", name, err, path)
		}
	}
}
