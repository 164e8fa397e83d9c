package render

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCycleWritesThenSkipsUnchanged(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out.conf")
	log := filepath.Join(dir, "reload.log")
	reload := writeScript(t, dir, "reload.sh", "echo reload >> "+log+"\n")
	r := testRenderer(t)
	job := Job{Spec: Spec{Dest: dest, Reload: reload}, Source: newTextSource(t, "upstream {{.}};\n", "a", 1)}

	res, err := cycle(t, r, job)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Changed || !res[0].Reloaded {
		t.Fatalf("first cycle: %+v, want changed and reloaded", res[0])
	}
	if got := readFile(t, dest); got != "upstream a;\n" {
		t.Fatalf("dest = %q", got)
	}
	fi, _ := os.Stat(dest)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644", fi.Mode().Perm())
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino

	// Same output: nothing written, no reload.
	res, err = cycle(t, r, job)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Changed || res[0].Reloaded {
		t.Fatalf("second cycle: %+v, want unchanged", res[0])
	}
	fi, _ = os.Stat(dest)
	if fi.Sys().(*syscall.Stat_t).Ino != ino {
		t.Error("unchanged output replaced the file")
	}
	if n := len(logLines(t, log)); n != 1 {
		t.Errorf("reload ran %d times, want 1", n)
	}

	// New output: replaced, reloaded.
	job.Source = newTextSource(t, "upstream {{.}};\n", "b", 1)
	if _, err := cycle(t, r, job); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, dest); got != "upstream b;\n" {
		t.Fatalf("dest = %q", got)
	}
	if n := len(logLines(t, log)); n != 2 {
		t.Errorf("reload ran %d times, want 2", n)
	}
	noTemps(t, dir)
}

func TestModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	uid, gid := 4321, 4322
	r := testRenderer(t)
	spec := Spec{Dest: dest, Mode: 0o600}
	if _, err := cycle(t, r, Job{Spec: spec, Source: static("x")}); err != nil {
		t.Fatal(err)
	}
	st := stat(t, dest)
	if st.Mode&0o777 != 0o600 {
		t.Errorf("mode %o, want 600", st.Mode&0o777)
	}
	// Same bytes, different owner: a change.
	spec.UID, spec.GID = &uid, &gid
	res, err := cycle(t, r, Job{Spec: spec, Source: static("x")})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Changed {
		t.Error("owner change not applied")
	}
	st = stat(t, dest)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	// Unset mode and owner keep what the file has.
	res, err = cycle(t, r, Job{Spec: Spec{Dest: dest}, Source: static("y")})
	if err != nil || !res[0].Changed {
		t.Fatalf("res %+v err %v", res, err)
	}
	st = stat(t, dest)
	if st.Mode&0o777 != 0o600 || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("attributes not kept: mode %o owner %d:%d", st.Mode&0o777, st.Uid, st.Gid)
	}
	// Same bytes, different mode: a change.
	res, err = cycle(t, r, Job{Spec: Spec{Dest: dest, Mode: 0o640}, Source: static("y")})
	if err != nil || !res[0].Changed {
		t.Fatalf("mode change: res %+v err %v", res, err)
	}
}

func stat(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func TestCheckRunsOnStagedFile(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	seen := filepath.Join(dir, "seen")
	// The check sees the new content at {{.src}}, in dest's directory, before the swap.
	check := writeScript(t, dir, "check.sh", `case "$1" in `+dir+`/.out.berth-*) ;; *) echo "bad path $1"; exit 1;; esac
cp "$1" `+seen+`
grep -q new "$1"
`)
	if err := os.WriteFile(dest, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := testRenderer(t)
	if _, err := cycle(t, r, Job{Spec: Spec{Dest: dest, Check: check + " {{.src}}"}, Source: static("new\n")}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, seen); got != "new\n" {
		t.Errorf("check saw %q", got)
	}
	if got := readFile(t, dest); got != "new\n" {
		t.Errorf("dest = %q", got)
	}
}

func TestBackup(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	r := testRenderer(t)
	for _, s := range []string{"one", "two", "three"} {
		if _, err := cycle(t, r, Job{Spec: Spec{Dest: dest, Backup: true}, Source: static(s)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, dest+".bak"); got != "two" {
		t.Errorf("backup = %q, want the previous file", got)
	}
	noTemps(t, dir)
}

// TestBadInputs: each case gives a clear error and leaves the destination
// exactly as it was.
func TestBadInputs(t *testing.T) {
	const old = "old content\n"
	tests := []struct {
		name    string
		spec    func(dir string) Spec
		source  func(t *testing.T) Source
		setup   func(t *testing.T, dir, dest string)
		want    string // substring of the error
		refused bool
	}{
		{
			name:   "render error",
			source: func(t *testing.T) Source { return newTextSource(t, "{{.missing}}", map[string]string{}, 1) },
			want:   `map has no entry for key "missing"`,
		},
		{
			name: "failing check",
			spec: func(dir string) Spec {
				return Spec{Check: writeScript(t, dir, "check.sh", "echo 'line 3: unknown directive'; exit 1\n") + " {{.src}}"}
			},
			want: "unknown directive",
		},
		{
			name: "hanging check times out",
			spec: func(string) Spec { return Spec{Check: "sleep 600", Timeout: 200 * time.Millisecond} },
			want: `check "sleep 600": timed out after 200ms`,
		},
		{
			name: "check with bad placeholder",
			spec: func(string) Spec { return Spec{Check: "cat {{.source}}"} },
			want: `check command "cat {{.source}}"`,
		},
		{
			name: "reload with bad placeholder",
			spec: func(string) Spec { return Spec{Reload: "kill -HUP {{.pid}}"} },
			want: `reload command "kill -HUP {{.pid}}"`,
		},
		{
			name: "failing reload restores",
			spec: func(dir string) Spec {
				return Spec{Reload: writeScript(t, dir, "reload.sh", "echo reload >> "+dir+"/reload.log; echo 'emerg: bad'; exit 1\n")}
			},
			want: "emerg: bad",
		},
		{
			name: "hanging reload times out and restores",
			spec: func(dir string) Spec {
				return Spec{Timeout: 300 * time.Millisecond, Reload: writeScript(t, dir, "reload.sh", "echo reload >> "+dir+"/reload.log; sleep 600\n")}
			},
			want: "timed out after 300ms",
		},
		{
			name: "unwritable directory",
			setup: func(t *testing.T, dir, _ string) {
				// Root ignores permission bits: make the directory a read-only bind mount.
				if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
				if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
					t.Fatal(err)
				}
			},
			want: "read-only file system",
		},
		{
			name: "destination is a directory",
			setup: func(t *testing.T, _, dest string) {
				os.Remove(dest)
				if err := os.Mkdir(dest, 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want: "is a directory",
		},
		{
			name: "destination is a FIFO",
			setup: func(t *testing.T, _, dest string) {
				os.Remove(dest)
				if err := unix.Mkfifo(dest, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: "is not a regular file (p---------)",
		},
		{
			name:    "min_entries",
			spec:    func(string) Spec { return Spec{MinEntries: 3} },
			source:  func(*testing.T) Source { return staticSource{data: []byte("x"), count: 2} },
			want:    "2 records, min_entries is 3",
			refused: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dest := filepath.Join(dir, "out.conf")
			if err := os.WriteFile(dest, []byte(old), 0o640); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, dir, dest)
			}
			var spec Spec
			if tc.spec != nil {
				spec = tc.spec(dir)
			}
			spec.Dest = dest
			var src Source = static("new content\n")
			if tc.source != nil {
				src = tc.source(t)
			}
			before, _ := os.Lstat(dest)
			res, err := cycle(t, testRenderer(t), Job{Spec: spec, Source: src})
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !errors.Is(err, res[0].Err) && res[0].Err == nil {
				t.Error("result carries no error")
			}
			if got := errors.Is(err, ErrRefused); got != tc.refused {
				t.Errorf("errors.Is(err, ErrRefused) = %v, want %v", got, tc.refused)
			}
			after, _ := os.Lstat(dest)
			if before.Mode() != after.Mode() {
				t.Errorf("destination mode changed: %v → %v", before.Mode(), after.Mode())
			}
			if after.Mode().IsRegular() {
				if got := readFile(t, dest); got != old {
					t.Errorf("destination changed to %q", got)
				}
			}
			if res[0].Changed {
				t.Error("result says changed")
			}
			noTemps(t, dir)
		})
	}
}

func TestReloadFailureRollsBackAndReloadsAgain(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	os.WriteFile(a, []byte("a-old"), 0o644)
	os.WriteFile(b, []byte("b-old"), 0o600)
	log := filepath.Join(dir, "reload.log")
	// The reload fails while a's new content is in place: it validates what it reloads.
	bad := writeScript(t, dir, "reload.sh", `echo "$(cat `+a+`)" >> `+log+`
grep -q new `+a+` && { echo "config test failed"; exit 1; }
exit 0
`)
	r := testRenderer(t)
	res, err := cycle(t, r,
		Job{Spec: Spec{Name: "a", Dest: a, Reload: bad}, Source: static("a-new")},
		Job{Spec: Spec{Name: "b", Dest: b, Reload: bad}, Source: static("b-new")},
		Job{Spec: Spec{Name: "c", Dest: c, Reload: bad}, Source: static("c-new")}, // did not exist
	)
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	for _, res := range res {
		if !res.Restored || res.Changed || res.Err == nil || !strings.Contains(res.Err.Error(), "config test failed") {
			t.Errorf("%s: %+v", res.Name, res)
		}
	}
	if got := readFile(t, a); got != "a-old" {
		t.Errorf("a = %q", got)
	}
	if got := readFile(t, b); got != "b-old" {
		t.Errorf("b = %q", got)
	}
	if fi, _ := os.Stat(b); fi.Mode().Perm() != 0o600 {
		t.Errorf("b mode %v after restore", fi.Mode().Perm())
	}
	if _, err := os.Stat(c); !os.IsNotExist(err) {
		t.Errorf("c should be gone after restore: %v", err)
	}
	// Reload ran once for the three files, then once more after the restore.
	if got := logLines(t, log); len(got) != 2 || got[0] != "a-new" || got[1] != "a-old" {
		t.Errorf("reload log %q, want [a-new a-old]", got)
	}
}

func TestReloadFailsTwice(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	os.WriteFile(dest, []byte("old"), 0o644)
	reload := writeScript(t, dir, "reload.sh", "echo down; exit 3\n")
	_, err := cycle(t, testRenderer(t), Job{Spec: Spec{Dest: dest, Reload: reload}, Source: static("new")})
	if err == nil || !strings.Contains(err.Error(), "previous file restored") || !strings.Contains(err.Error(), "reload after restore also failed") {
		t.Fatalf("error %v does not report both failures", err)
	}
	if got := readFile(t, dest); got != "old" {
		t.Errorf("dest = %q", got)
	}
}

func TestReloadsAreDeduplicated(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "reload.log")
	r := testRenderer(t)
	nginx := "echo nginx >> " + log
	haproxy := "echo haproxy >> " + log
	job := func(name, reload, content string) Job {
		return Job{Spec: Spec{Name: name, Dest: filepath.Join(dir, name), Reload: reload}, Source: static(content)}
	}
	res, err := cycle(t, r,
		job("a", nginx, "1"), job("b", haproxy, "1"), job("c", nginx, "1"),
		job("d", nginx+" # {{.src}}", "1"), // a different command once expanded
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range res {
		if !res.Reloaded {
			t.Errorf("%s not reloaded", res.Name)
		}
	}
	if got := strings.Join(logLines(t, log), " "); got != "nginx haproxy nginx" {
		t.Errorf("reloads %q, want nginx once for a and c, haproxy, nginx for d", got)
	}
	// Only c changes: only its reload runs.
	os.Remove(log)
	if _, err := cycle(t, r, job("a", nginx, "1"), job("b", haproxy, "1"), job("c", nginx, "2")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(logLines(t, log), " "); got != "nginx" {
		t.Errorf("reloads %q, want nginx", got)
	}
}

func TestSameDestinationTwice(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	res, err := cycle(t, testRenderer(t),
		Job{Spec: Spec{Name: "one", Dest: dest}, Source: static("1")},
		Job{Spec: Spec{Name: "two", Dest: dir + "/./out"}, Source: static("2")})
	if err == nil || res[1].Err == nil || !strings.Contains(err.Error(), "also written by one") {
		t.Fatalf("err %v", err)
	}
	if got := readFile(t, dest); got != "1" {
		t.Errorf("dest = %q", got)
	}
}

func TestMaxShrink(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	r := testRenderer(t)
	job := func(n int, force bool) Job {
		return Job{Spec: Spec{Dest: dest, MaxShrink: 0.5}, Source: staticSource{data: []byte(strings.Repeat("x\n", n)), count: n}, Force: force}
	}
	steps := []struct {
		n       int
		force   bool
		refused bool
		want    int // lines in dest afterwards
	}{
		{10, false, false, 10},
		{6, false, false, 6}, // -40%
		{2, false, true, 6},  // -66%: refused, last good file stays
		{3, false, false, 3}, // -50% from 6: allowed (not more than 50%)
		{1, true, false, 1},  // forced
		{0, false, true, 1},  // -100%
	}
	for i, s := range steps {
		_, err := cycle(t, r, job(s.n, s.force))
		if got := errors.Is(err, ErrRefused); got != s.refused {
			t.Fatalf("step %d (%d records): refused=%v, want %v (err %v)", i, s.n, got, s.refused, err)
		}
		if got := strings.Count(readFile(t, dest), "\n"); got != s.want {
			t.Fatalf("step %d: dest has %d lines, want %d", i, got, s.want)
		}
	}
}

// TestBindMountedFile: a single file bind-mounted over the destination
// cannot be renamed over; the pipeline writes it in place and keeps the inode.
func TestBindMountedFile(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out.conf")
	src := filepath.Join(t.TempDir(), "host.conf")
	os.WriteFile(dest, nil, 0o644)
	os.WriteFile(src, []byte("a much longer old content\n"), 0o644)
	if err := unix.Mount(src, dest, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dest, unix.MNT_DETACH) })
	ino := stat(t, dest).Ino
	res, err := cycle(t, testRenderer(t), Job{Spec: Spec{Dest: dest, Backup: true}, Source: static("new\n")})
	if err != nil || !res[0].Changed {
		t.Fatalf("res %+v err %v", res, err)
	}
	if got := readFile(t, dest); got != "new\n" {
		t.Errorf("dest = %q", got)
	}
	if got := readFile(t, src); got != "new\n" {
		t.Errorf("bind source = %q, want the new content", got)
	}
	if stat(t, dest).Ino != ino {
		t.Error("inode changed")
	}
	if got := readFile(t, dest+".bak"); got != "a much longer old content\n" {
		t.Errorf("backup = %q", got)
	}
	noTemps(t, dir)
}

// TestRestoreFails: the reload fails and the directory has meanwhile become
// read-only, so the previous file cannot be put back; the error says so and
// the result says the new file is still in place.
func TestRestoreFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	os.Mkdir(dir, 0o755)
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	dest := filepath.Join(dir, "out")
	os.WriteFile(dest, []byte("old"), 0o644)
	reload := "mount -o remount,bind,ro " + dir + " && exit 1"
	res, err := cycle(t, testRenderer(t), Job{Spec: Spec{Dest: dest, Reload: reload}, Source: static("new")})
	if err == nil || !strings.Contains(err.Error(), "restoring the previous file failed") || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("error %v", err)
	}
	if !res[0].Changed || res[0].Restored {
		t.Errorf("result %+v: want the new file reported in place", res[0])
	}
	if got := readFile(t, dest); got != "new" {
		t.Errorf("dest = %q", got)
	}
}

// TestSymlinkedDestination: the file behind a symbolic link is replaced and
// the link stays a link.
func TestSymlinkedDestination(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "sites-available", "app.conf")
	link := filepath.Join(dir, "sites-enabled", "app.conf")
	os.MkdirAll(filepath.Dir(target), 0o755)
	os.MkdirAll(filepath.Dir(link), 0o755)
	os.WriteFile(target, []byte("old"), 0o644)
	if err := os.Symlink("../sites-available/app.conf", link); err != nil {
		t.Fatal(err)
	}
	res, err := cycle(t, testRenderer(t), Job{Spec: Spec{Dest: link}, Source: static("new")})
	if err != nil || !res[0].Changed || res[0].Dest != target {
		t.Fatalf("%+v %v", res[0], err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi.Mode(), err)
	}
	if got := readFile(t, target); got != "new" {
		t.Errorf("target = %q", got)
	}
	noTemps(t, filepath.Dir(link))
	noTemps(t, filepath.Dir(target))
}

// TestPendingReload: a destination that was swapped in but whose reload
// never succeeded (berth died in between, or the reload failed and the old
// file could not be put back) is reloaded on the next cycle even though its
// content is unchanged; a successful reload clears the mark.
func TestPendingReload(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "app.conf")
	log := filepath.Join(dir, "reloads.log")
	reload := writeScript(t, dir, "reload.sh", "echo reload >> "+log)
	r := testRenderer(t)
	job := Job{Spec: Spec{Name: "app", Dest: dest, Reload: reload}, Source: static("v1\n")}
	if _, err := cycle(t, r, job); err != nil {
		t.Fatal(err)
	}
	if n := len(logLines(t, log)); n != 1 {
		t.Fatalf("%d reloads after the first write", n)
	}
	if pendingReload(dest) {
		t.Fatal("a successful reload left the pending mark")
	}
	// Unchanged, nothing pending: no reload.
	if _, err := cycle(t, r, job); err != nil {
		t.Fatal(err)
	}
	if n := len(logLines(t, log)); n != 1 {
		t.Fatalf("%d reloads after an unchanged cycle, want 1", n)
	}
	// A crash between a swap and its reload leaves the mark behind: a new
	// renderer (a restarted daemon) reloads although nothing changed.
	setPendingReload(dest, r.log)
	res, err := cycle(t, testRenderer(t), job)
	if err != nil || res[0].Changed || !res[0].Reloaded {
		t.Fatalf("pending reload: %+v %v", res[0], err)
	}
	if n := len(logLines(t, log)); n != 2 || pendingReload(dest) {
		t.Fatalf("%d reloads, mark still there: %v", n, pendingReload(dest))
	}
	noTemps(t, dir)
}

// TestSymlinkDestinations: a link berth can trust is followed (the link
// stays, also when its target does not exist yet); a link in a directory
// others can write is refused, and nothing is written through it.
func TestSymlinkDestinations(t *testing.T) {
	r := testRenderer(t)
	base := t.TempDir()
	avail, enabled := filepath.Join(base, "sites-available"), filepath.Join(base, "sites-enabled")
	os.Mkdir(avail, 0o755)
	os.Mkdir(enabled, 0o755)
	link := filepath.Join(enabled, "app")
	if err := os.Symlink("../sites-available/app", link); err != nil { // dangling: the target comes with the first render
		t.Fatal(err)
	}
	if _, err := cycle(t, r, Job{Spec: Spec{Name: "app", Dest: link}, Source: static("v1\n")}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi, err)
	}
	if got := readFile(t, filepath.Join(avail, "app")); got != "v1\n" {
		t.Fatalf("target = %q", got)
	}

	// A link in a world-writable directory: someone else may have planted it.
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	victim := filepath.Join(base, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	planted := filepath.Join(open, "app.conf")
	os.Symlink(victim, planted)
	_, err := cycle(t, r, Job{Spec: Spec{Name: "planted", Dest: planted}, Source: static("evil\n")})
	if err == nil || !strings.Contains(err.Error(), "refusing to follow") {
		t.Fatalf("a link in a world-writable directory was followed: %v", err)
	}
	if got := readFile(t, victim); got != "precious\n" {
		t.Fatalf("the link's target was overwritten: %q", got)
	}
}
