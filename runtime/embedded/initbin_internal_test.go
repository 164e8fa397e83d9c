package embedded

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInitHandoff checks the C constructor of package containerinit (in
// this test binary) on its own: run as "<exe> init" by a parent holding
// a sealed memfd named berth-init, it re-executes from that memfd. The
// memfd here holds busybox, so a hand-off shows as busybox's echo
// printing "init"; without one the test binary's libcontainer.Init runs
// and fails on the bogus init pipe.
func TestInitHandoff(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found: install Debian's busybox-static (scripts/install-deps does)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unsealed := func(t *testing.T) *os.File {
		fd, err := unix.MemfdCreate(initMemfdName, unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "unsealed")
		b, err := os.ReadFile(bb)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name    string
		memfd   func(t *testing.T) *os.File // nil: none
		argv1   string
		handoff bool
	}{
		{"sealed memfd", func(t *testing.T) *os.File {
			f, err := sealedCopy(bb)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, "init", true},
		{"no memfd", nil, "init", false},
		{"writable memfd is not trusted", unsealed, "init", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.memfd != nil {
				f := tc.memfd(t)
				t.Cleanup(func() { f.Close() })
			}
			cmd := exec.Command(self)
			cmd.Args = []string{"echo", tc.argv1}
			cmd.Env = []string{"_LIBCONTAINER_INITPIPE=99"}
			out, err := cmd.CombinedOutput()
			handedOff := err == nil && string(out) == tc.argv1+"\n"
			if handedOff != tc.handoff {
				t.Errorf("hand-off %v, want %v (exit %v, output %q)", handedOff, tc.handoff, err, strings.TrimSpace(string(out)))
			}
		})
	}
}
