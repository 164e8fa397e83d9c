package watcher_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthd/berth/watcher"
)

func TestFilesSeesEditorSaves(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "nginx.tmpl")
	other := filepath.Join(dir, "unrelated.txt")
	os.WriteFile(tmpl, []byte("v1"), 0o644)
	f, err := watcher.NewFiles(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go f.Run(ctx)
	ch, stop, err := f.Watch([]string{tmpl})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	expect := func(what string, want bool) {
		t.Helper()
		select {
		case <-ch:
			if !want {
				t.Fatalf("%s: notified, want no notification", what)
			}
		case <-time.After(map[bool]time.Duration{true: 10 * time.Second, false: 300 * time.Millisecond}[want]):
			if want {
				t.Fatalf("%s: no notification", what)
			}
		}
		// Drain duplicates of the same change until quiet.
		for quiet := false; !quiet; {
			select {
			case <-ch:
			case <-time.After(300 * time.Millisecond):
				quiet = true
			}
		}
	}
	os.WriteFile(tmpl, []byte("v2"), 0o644)
	expect("write in place", true)

	// vim/editors: write a temp file, rename it over the original.
	tmp := filepath.Join(dir, ".nginx.tmpl.swp")
	os.WriteFile(tmp, []byte("v3"), 0o644)
	os.Rename(tmp, tmpl)
	expect("rename over", true)

	os.WriteFile(other, []byte("x"), 0o644)
	expect("unrelated file", false)

	os.Remove(tmpl)
	expect("remove", true)
	os.WriteFile(tmpl, []byte("v4"), 0o644)
	expect("re-create", true)
}
