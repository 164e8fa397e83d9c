package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
)

// TestCheckInPlaceConfD: a conf.d fragment checked in place, against a
// real nginx whose nginx.conf includes conf.d/*.conf. A staged copy would
// never be seen by the include; in place, the new fragment is swapped in
// and "nginx -t" checks the real configuration. A fragment that is only
// wrong in context (an upstream nginx.conf already defines) fails the
// check, the previous fragment is swapped back before any reload, and
// nginx keeps serving it. Try does the same and always swaps back. A
// rollback file left by a renderer that died mid-check is put back by the
// next cycle.
func TestCheckInPlaceConfD(t *testing.T) {
	n := testenv.NewNginx(t)
	confd := filepath.Join(n.Dir, "conf.d")
	if err := os.Mkdir(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := n.Prelude() + "    upstream shared { server 127.0.0.1:9; }\n    include " + confd + "/*.conf;\n}\n"
	if err := os.WriteFile(n.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(confd, "default.conf")
	reloads := filepath.Join(n.Dir, "reloads.log")
	spec := Spec{
		Name: "fragment", Dest: dest, Mode: 0o640,
		Check:        fmt.Sprintf("%s -t -q -p %s/ -c %s", n.Bin, n.Dir, n.Conf),
		CheckInPlace: true,
		Timeout:      20 * time.Second,
	}
	fragment := func(version, extra string) Job {
		return Job{Spec: spec, Source: static(extra + "server {\n    listen " + n.Addr + ";\n    location / { return 200 \"" + version + "\\n\"; }\n}\n")}
	}
	r := testRenderer(t)

	// First render, then nginx starts on it.
	if _, err := cycle(t, r, fragment("v1", "")); err != nil {
		t.Fatal(err)
	}
	n.Start(t)
	waitBody(t, n.Addr, "v1")

	spec.Reload = "echo reload >> " + reloads + " && " + n.ReloadCommand()
	res, err := cycle(t, r, fragment("v2", ""))
	if err != nil || !res[0].Changed || !res[0].Reloaded {
		t.Fatalf("good fragment: %+v %v", res, err)
	}
	waitBody(t, n.Addr, "v2")
	good := readFile(t, dest)

	// Wrong only in context: nginx.conf defines upstream "shared" already.
	bad := fragment("v3", "upstream shared { server 127.0.0.1:10; }\n")
	res, err = cycle(t, r, bad)
	if err == nil || !strings.Contains(err.Error(), `duplicate upstream "shared"`) || !strings.Contains(err.Error(), "previous file restored") {
		t.Fatalf("fragment wrong in context: %v, want nginx's complaint and a restore", err)
	}
	if res[0].Changed || res[0].Reloaded {
		t.Fatalf("failed in-place check: %+v", res[0])
	}
	if got := readFile(t, dest); got != good {
		t.Fatalf("dest after a failed in-place check:\n%s", got)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v after the restore", fi.Mode().Perm())
	}
	if got := logLines(t, reloads); len(got) != 1 {
		t.Fatalf("%d reloads, want 1 (the failed check reloads nothing)", len(got))
	}
	waitBody(t, n.Addr, "v2")

	// Checked staged, the same fragment passes: nginx -t never sees it.
	staged := bad
	staged.Spec.CheckInPlace = false
	if err := r.Try(context.Background(), staged); err != nil {
		t.Fatalf("a staged check saw the fragment: %v", err)
	}

	// Try: checked where it goes, always swapped back, nothing reloaded.
	if err := r.Try(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "duplicate upstream") {
		t.Fatalf("try of the bad fragment: %v", err)
	}
	if err := r.Try(context.Background(), fragment("v4", "")); err != nil {
		t.Fatalf("try of a good fragment: %v", err)
	}
	if got := readFile(t, dest); got != good {
		t.Fatalf("dest after tries:\n%s", got)
	}
	if got := logLines(t, reloads); len(got) != 1 {
		t.Fatalf("a try reloaded: %d reloads", len(got))
	}

	// A renderer died between the swap-in and the verdict: the next cycle
	// restores the previous file first.
	if err := os.WriteFile(rollbackPath(dest), []byte(good), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest, []byte("upstream shared { server 127.0.0.1:11; }\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	res, err = cycle(t, testRenderer(t), fragment("v2", ""))
	if err != nil || res[0].Changed {
		t.Fatalf("after recovery: %+v %v", res, err)
	}
	if got := readFile(t, dest); got != good {
		t.Fatalf("dest after recovery:\n%s", got)
	}
	for _, p := range []string{rollbackPath(dest), absentPath(dest)} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind", p)
		}
	}
	noTemps(t, confd)
	waitBody(t, n.Addr, "v2")
}

// TestCheckInPlaceNewFile: an in-place check of a destination that did
// not exist removes the new file again when the check fails.
func TestCheckInPlaceNewFile(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "x.conf")
	check := writeScript(t, dir, "check.sh", `grep -q BAD `+dest+` && { echo "BAD in place"; exit 1; }; exit 0`+"\n")
	spec := Spec{Dest: dest, Check: check, CheckInPlace: true}
	if _, err := cycle(t, testRenderer(t), Job{Spec: spec, Source: static("BAD\n")}); err == nil || !strings.Contains(err.Error(), "BAD in place") {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Fatalf("dest exists after a failed in-place check of a new file: %v", err)
	}
	if _, err := cycle(t, testRenderer(t), Job{Spec: spec, Source: static("good\n")}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, dest); got != "good\n" {
		t.Fatalf("dest = %q", got)
	}
	if _, err := os.Lstat(absentPath(dest)); !os.IsNotExist(err) {
		t.Fatal("marker left behind")
	}
	noTemps(t, dir)
}
