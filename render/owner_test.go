package render

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// renderAsEnv names the destination a re-executed test binary renders
// "new" into once, as whatever user it was started as.
const renderAsEnv = "BERTH_TEST_RENDER_AS_DEST"

func renderOnce(dest string) {
	if _, err := New().Cycle(context.Background(), []Job{{Spec: Spec{Dest: dest}, Source: static("new")}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestNonRootKeepsOwnerBestEffort: a berth that is not root replaces a file
// another user owns (in a directory it may write): the content changes, the
// owner becomes berth's since it may not give the file away.
func TestNonRootKeepsOwnerBestEffort(t *testing.T) {
	const nobody = 65534
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary, where nobody may run it.
	bin := filepath.Join(base, "render.test")
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "conf")
	os.Mkdir(dir, 0o777)
	os.Chmod(dir, 0o777)
	dest := filepath.Join(dir, "out")
	os.WriteFile(dest, []byte("old"), 0o644) // owned by root

	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), renderAsEnv+"="+dest)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("render as nobody: %v\n%s", err, out)
	}
	if got := readFile(t, dest); got != "new" {
		t.Errorf("dest = %q", got)
	}
	if st := stat(t, dest); st.Uid != nobody {
		t.Errorf("owner %d, want nobody's", st.Uid)
	}

}
