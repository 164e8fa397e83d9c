package embedded

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTailer: lines move from the raw files to container.log with a
// partial last line held back, the log rotates, and moved raw bytes no
// longer take disk space.
func TestTailer(t *testing.T) {
	dir := t.TempDir()
	tl := newTailer(dir)
	tl.maxSize = 64 << 10
	stdout, stderr, err := tl.openRaw()
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	line := strings.Repeat("x", 99) + "\n"
	for round := range 10 { // 200 KB in 10 syncs: several rotations
		for range 200 {
			if _, err := stdout.WriteString(line); err != nil {
				t.Fatal(err)
			}
		}
		if round == 9 {
			fmt.Fprint(stderr, "partial")
		}
		if err := tl.sync(false); err != nil {
			t.Fatal(err)
		}
	}
	rotated, err := os.Stat(tl.logPath() + ".1")
	if err != nil || rotated.Size() > tl.maxSize {
		t.Fatalf("rotated log: %v %v", rotated, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(tl.rawPath(0), &st); err != nil || st.Blocks*512 > 8192 || st.Size != 200000 {
		t.Errorf("raw stdout: size %d, %d bytes on disk, want 200000 with the moved part freed", st.Size, st.Blocks*512)
	}
	b, _ := os.ReadFile(tl.logPath())
	if strings.Contains(string(b), "partial") {
		t.Error("a partial line was moved before the process ended")
	}
	if err := tl.sync(true); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(tl.logPath())
	if !strings.Contains(string(b), `"stream":"stderr","log":"partial"`) {
		t.Errorf("final sync did not move the partial line: %s", b[max(0, len(b)-200):])
	}
	if _, err := os.Stat(filepath.Join(dir, "container.log.2")); err == nil {
		t.Error("more than one rotated file kept")
	}
}
