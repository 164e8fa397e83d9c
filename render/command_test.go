package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExecTimeoutKillsTheGroup: on timeout the whole process group dies,
// including what the shell started in the background.
func TestExecTimeoutKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // time for the shell to start its child on a busy machine
	defer cancel()
	out, err := Exec{}.Run(ctx, []string{"/bin/sh", "-c", "sleep 600 & echo $! > " + pidFile + "; echo started; wait"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a deadline error", err)
	}
	if !strings.Contains(string(out), "started") {
		t.Errorf("output %q lost", out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d outlived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting to be reaped does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		line string
		want string
	}{
		{"echo one; echo two >&2; exit 4", `check "echo one; echo two >&2; exit 4": exit status 4: one | two`},
		{"exit 1", `check "exit 1": exit status 1`},
		{"/nonexistent/berth-cmd", "not found"},
	}
	for _, tc := range tests {
		err := run(context.Background(), Exec{}, "check", tc.line, time.Minute)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.line, err, tc.want)
		}
	}
	if err := run(context.Background(), Exec{}, "check", "true", 0); err != nil {
		t.Errorf("true: %v", err)
	}
}

// TestExecBackgroundChildHoldingOutput: a command that exits 0 but leaves a
// background process holding its output (a reload that starts a daemon)
// succeeds, with the output it wrote.
func TestExecBackgroundChildHoldingOutput(t *testing.T) {
	dir := t.TempDir()
	background := func(name string) string {
		pidFile := filepath.Join(dir, name)
		t.Cleanup(func() { // the background sleep is ours to stop
			if b, err := os.ReadFile(pidFile); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		})
		return "sleep 600 & echo $! > " + pidFile
	}
	e := Exec{WaitDelay: 200 * time.Millisecond}
	out, err := e.Run(context.Background(), []string{"/bin/sh", "-c", "echo reloaded; " + background("ok")})
	if err != nil || !strings.Contains(string(out), "reloaded") {
		t.Fatalf("out %q, err %v", out, err)
	}
	// A failing one still fails.
	if _, err := e.Run(context.Background(), []string{"/bin/sh", "-c", background("fail") + "; exit 3"}); err == nil {
		t.Error("exit 3 reported as success")
	}
}

// TestExecKeepsTheTail: a command that prints a lot keeps only its last
// output (where the error is) in memory.
func TestExecKeepsTheTail(t *testing.T) {
	out, err := Exec{}.Run(context.Background(), []string{"/bin/sh", "-c", "yes noise | head -c 1000000; echo; echo the real error >&2; exit 2"})
	if err == nil {
		t.Fatal("want the exit error")
	}
	if len(out) > maxCommandOutput+64 || !strings.HasSuffix(string(out), "the real error\n") || !strings.HasPrefix(string(out), "[earlier output dropped]") {
		t.Fatalf("kept %d bytes, ending %q", len(out), out[max(0, len(out)-40):])
	}
}
