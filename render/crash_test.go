package render

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// crashEnv names the destination a re-executed test binary renders into,
// in a loop, until it is killed.
const crashEnv = "BERTH_TEST_CRASH_DEST"

func TestMain(m *testing.M) {
	if dest := os.Getenv(renderAsEnv); dest != "" {
		renderOnce(dest)
		return
	}
	if dest := os.Getenv(crashEnv); dest != "" {
		base, _ := strconv.Atoi(os.Getenv(crashEnv + "_BASE"))
		crashChild(dest, base)
		return
	}
	os.Exit(m.Run())
}

// crashContent is version v of a large output: its first line names v, and
// every other line depends on v, so any mix of two versions is detectable.
func crashContent(v int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "version %d\n", v)
	line := bytes.Repeat([]byte{byte('a' + v%26)}, 120)
	for i := 0; b.Len() < 4<<20; i++ {
		fmt.Fprintf(&b, "%d %d %s\n", v, i, line)
	}
	return b.Bytes()
}

// crashChild renders ever-new large versions into dest through the whole
// pipeline; it never returns on its own.
func crashChild(dest string, base int) {
	r := New()
	for v := base + 1; ; v++ {
		job := Job{Spec: Spec{Dest: dest}, Source: staticSource{data: crashContent(v), count: 1}}
		if _, err := r.Cycle(context.Background(), []Job{job}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Println(v)
	}
}

// TestCrashLeavesOldOrNew kills the renderer with SIGKILL at random points
// while it writes large outputs: the destination always holds exactly one
// complete version, never a partial or mixed file.
func TestCrashLeavesOldOrNew(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "big.conf")
	if err := os.WriteFile(dest, crashContent(0), 0o644); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := 0; i < 12; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dest, fmt.Sprintf("%s_BASE=%d", crashEnv, 1000*(i+1)))
		var errb bytes.Buffer
		cmd.Stderr = &errb
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		// Kill at a random point of the render loop: wait for its first
		// render on odd runs (mid-loop), not on even ones (early, mid-first-write).
		out := bufio.NewReader(stdout)
		if i%2 == 1 {
			if _, err := out.ReadString('\n'); err != nil {
				t.Fatalf("child: %v\n%s", err, errb.String())
			}
		}
		time.Sleep(time.Duration(rng.IntN(250)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(out)
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("child did not die by the signal: %v\n%s", err, errb.String())
		}
		got, err := os.ReadFile(dest)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := bytes.Cut(got, []byte("\n"))
		v, err := strconv.Atoi(string(bytes.TrimPrefix(first, []byte("version "))))
		if err != nil || !bytes.Equal(got, crashContent(v)) {
			t.Fatalf("run %d: destination is not one complete version (%d bytes, first line %q)", i, len(got), first)
		}
		seen[v] = true
		t.Logf("run %d: killed after %d more renders; destination holds version %d", i, bytes.Count(rest, []byte("\n")), v)
	}
	if len(seen) < 2 {
		t.Errorf("the child never completed a render: versions seen %v", seen)
	}
	// The next renderer to write the destination removes the staging files
	// the killed ones left, once they are old enough not to be another
	// process's render in progress.
	left, _ := filepath.Glob(stagePattern(dest))
	old := time.Now().Add(-2 * staleStaging)
	for _, f := range left {
		os.Chtimes(f, old, old)
	}
	if _, err := testRenderer(t).Cycle(context.Background(), []Job{{Spec: Spec{Dest: dest}, Source: static("after")}}); err != nil {
		t.Fatal(err)
	}
	noTemps(t, dir)
}
