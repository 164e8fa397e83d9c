package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthd/berth/internal/atomicfile"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	for _, tc := range []struct {
		name    string
		data    string
		mode    os.FileMode
		changed bool // WriteIfChanged replaced the file
	}{
		{"new file", "a\n", 0o644, true},
		{"same bytes: left alone", "a\n", 0o644, false},
		{"new bytes", "b\n", 0o600, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.Stat(name)
			if err := atomicfile.WriteIfChanged(name, []byte(tc.data), tc.mode); err != nil {
				t.Fatal(err)
			}
			after, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(name); string(got) != tc.data || after.Mode().Perm() != tc.mode {
				t.Errorf("file %q mode %v, want %q %v", got, after.Mode().Perm(), tc.data, tc.mode)
			}
			if replaced := before == nil || !os.SameFile(before, after); replaced != tc.changed {
				t.Errorf("replaced %v, want %v", replaced, tc.changed)
			}
			time.Sleep(time.Millisecond)
		})
	}
	if err := atomicfile.Write(filepath.Join(dir, "missing", "f"), nil, 0o644); err == nil {
		t.Error("a write into a missing directory succeeded")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".f.*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
