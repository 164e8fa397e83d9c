package runner_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSlowTemplateWrites: a template rewritten in place, slowly (truncated,
// then written in pieces with pauses shorter than the settle window, once
// from Go and once through a shell's ">"), is re-read only once its
// writes have gone quiet: polling dest throughout, every version seen is a
// complete render of one of the whole templates, never of a part.
func TestSlowTemplateWrites(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	st.Put(t.Context(), "/app/port", []byte("8080"))
	dir := t.TempDir()
	version := func(name string) (text, out string) {
		var tb, ob strings.Builder
		for i := 1; i <= 12; i++ {
			fmt.Fprintf(&tb, "%s line %02d: port {{ key \"/app/port\" }}\n", name, i)
			fmt.Fprintf(&ob, "%s line %02d: port 8080\n", name, i)
		}
		return tb.String(), ob.String()
	}
	v1, out1 := version("one")
	v2, out2 := version("two")
	v3, out3 := version("three")
	tmpl := kvTemplate(t, dir, "app", "/app/", v1)
	tmpl.Settle = 200 * time.Millisecond
	startRunner(t, st, tmpl)
	waitFile(t, tmpl.Spec.Dest, out1)

	// Read dest throughout and keep every version seen.
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			b, err := os.ReadFile(tmpl.Spec.Dest)
			if err == nil {
				mu.Lock()
				seen[string(b)] = true
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	pieces := func(text string, n int) []string {
		var out []string
		for size := (len(text) + n - 1) / n; len(text) > 0; {
			k := min(size, len(text))
			out, text = append(out, text[:k]), text[k:]
		}
		return out
	}

	// Truncate, pause, then eight pieces 60 ms apart: 540 ms of partial
	// versions, each of which would parse (the cuts fall anywhere).
	f, err := os.OpenFile(tmpl.Src, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	for _, p := range pieces(v2, 8) {
		if _, err := f.WriteString(p); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	f.Close()
	waitFile(t, tmpl.Spec.Dest, out2)

	// A shell's ">" redirection, written in pieces.
	var script strings.Builder
	script.WriteString("{ ")
	for _, p := range pieces(v3, 6) {
		fmt.Fprintf(&script, "printf '%%s' '%s'; sleep 0.06; ", strings.ReplaceAll(p, "'", `'\''`))
	}
	fmt.Fprintf(&script, "} > '%s'", tmpl.Src)
	if out, err := exec.Command("/bin/sh", "-c", script.String()).CombinedOutput(); err != nil {
		t.Fatalf("shell rewrite: %v: %s", err, out)
	}
	waitFile(t, tmpl.Spec.Dest, out3)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	for v := range seen {
		if v != out1 && v != out2 && v != out3 {
			t.Errorf("a partial version reached dest:\n%s", v)
		}
	}
	if len(seen) != 3 {
		t.Errorf("saw %d versions of dest, want the 3 complete ones", len(seen))
	}
}
