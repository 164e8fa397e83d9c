package owner_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/runtime/embedded/owner"
)

func TestClaim(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	o, err := owner.Claim(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !owner.IsMark(o.Mark) || o.StateDir != dir {
		t.Fatalf("owner %+v", o)
	}
	_, err = owner.Claim(dir)
	if !errors.Is(err, owner.ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second claim: %v; want ErrInUse naming the state dir and pid %d", err, os.Getpid())
	}
	if desc, ok := owner.Describe(dir, o.Mark); !ok || !strings.Contains(desc, "running, pid") || !strings.Contains(desc, dir) {
		t.Errorf("Describe while claimed: %q, %v", desc, ok)
	}
	if err := o.Release(); err != nil {
		t.Fatal(err)
	}
	if desc, ok := owner.Describe(dir, o.Mark); !ok || !strings.Contains(desc, "not running") {
		t.Errorf("Describe after release: %q, %v", desc, ok)
	}
	again, err := owner.Claim(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Release()
	if again.Mark != o.Mark {
		t.Errorf("mark changed across restarts: %s, then %s", o.Mark, again.Mark)
	}
	if m, err := owner.Mark(dir); err != nil || m != o.Mark {
		t.Errorf("Mark = %s, %v; want %s", m, err, o.Mark)
	}

	// A copy of the state dir (same instance id), another state dir and
	// the same path created again are other daemons.
	cp := filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(cp, 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, owner.File))
	if err := os.WriteFile(filepath.Join(cp, owner.File), b, 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	marks := map[string]string{"original": o.Mark}
	for name, d := range map[string]string{"copy": cp, "other": other} {
		c, err := owner.Claim(d)
		if err != nil {
			t.Fatal(err)
		}
		marks[name] = c.Mark
		c.Release()
	}
	again.Release()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if desc, ok := owner.Describe(dir, o.Mark); ok || !strings.Contains(desc, "gone") {
		t.Errorf("Describe of a removed state dir: %q, %v", desc, ok)
	}
	re, err := owner.Claim(dir)
	if err != nil {
		t.Fatal(err)
	}
	marks["recreated"] = re.Mark
	re.Release()
	seen := map[string]string{}
	for name, m := range marks {
		if prev, dup := seen[m]; dup {
			t.Errorf("%s and %s share mark %s", prev, name, m)
		}
		seen[m] = name
	}
}

func TestDamagedInstanceFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, owner.File), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Claim(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("claim with a damaged %s: %v", owner.File, err)
	}
}

func TestParseTag(t *testing.T) {
	for _, tc := range []struct {
		in           string
		mark, detail string
		ok           bool
	}{
		{"berth 0a1b2c3d /var/lib/my berth", "0a1b2c3d", "/var/lib/my berth", true},
		{"berth 0a1b2c3d", "0a1b2c3d", "", true},
		{"berth 0A1B2C3D x", "", "", false},
		{"berth 0a1b2c3 x", "", "", false},
		{"docker 0a1b2c3d x", "", "", false},
		{"", "", "", false},
	} {
		m, d, ok := owner.ParseTag(tc.in)
		if m != tc.mark || d != tc.detail || ok != tc.ok {
			t.Errorf("ParseTag(%q) = %q, %q, %v; want %q, %q, %v", tc.in, m, d, ok, tc.mark, tc.detail, tc.ok)
		}
	}
	o := &owner.Owner{Mark: "0a1b2c3d"}
	if m, d, ok := owner.ParseTag(o.Tag("abc")); m != o.Mark || d != "abc" || !ok {
		t.Errorf("round trip: %q %q %v", m, d, ok)
	}
}
