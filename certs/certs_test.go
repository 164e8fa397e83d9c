package certs_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/internal/testenv"
)

func TestForLookupOrder(t *testing.T) {
	set := certs.NewSet("/c", []certs.Cert{
		{Name: "exact.example.com"}, {Name: "example.com"}, {Name: "b.example.com"},
		{Name: "shared"}, {Name: "default"},
	})
	noDefault := certs.NewSet("/c", []certs.Cert{{Name: "example.com"}, {Name: "com"}})
	cases := []struct {
		set               *certs.Set
		host, certName    string
		wantName, wantVia string
	}{
		{set, "exact.example.com", "", "exact.example.com", "host"},
		{set, "EXACT.example.com", "", "exact.example.com", "host"},
		{set, "a.b.example.com", "", "b.example.com", "parent"}, // the longest parent first
		{set, "x.y.z.example.com", "", "example.com", "parent"}, // any depth
		{set, "*.example.com", "", "example.com", "parent"},     // a wildcard host
		{set, "example.com", "", "example.com", "host"},
		{set, "exact.example.com", "shared", "shared", "CERT_NAME"}, // CERT_NAME wins, as in nginx-proxy
		{set, "exact.example.com", "missing", "default", "default"}, // a CERT_NAME the set lacks: the default
		{set, "other.org", "", "default", "default"},
		{set, "notexample.com", "", "default", "default"},             // labels, not a string suffix
		{set, "~^app\\d+\\.example\\.com$", "", "default", "default"}, // a regular expression: no name match
		{noDefault, "other.org", "", "", ""},
		{noDefault, "foo.com", "", "", ""}, // never a top-level domain alone
		{nil, "example.com", "", "", ""},
	}
	for _, tc := range cases {
		m := tc.set.For(tc.host, tc.certName)
		var name, via string
		if m != nil {
			name, via = m.Name, m.Via
		}
		if name != tc.wantName || via != tc.wantVia {
			t.Errorf("For(%q, %q) = %q via %q, want %q via %q", tc.host, tc.certName, name, via, tc.wantName, tc.wantVia)
		}
	}
}

func TestLoadBadInput(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	week := time.Now().Add(7 * 24 * time.Hour)
	ca.Issue(t, dir, "good.example.com", "good.example.com", week, "good.example.com")
	ca.Issue(t, dir, "expired.example.com", "expired.example.com", time.Now().Add(-time.Hour), "expired.example.com")
	ca.Issue(t, dir, "mismatch.example.com", "mismatch.example.com", week, "mismatch.example.com")
	_, otherKey := ca.Pair(t, "x", week, "x")
	testenv.WriteAtomic(t, filepath.Join(dir, "mismatch.example.com.key"), otherKey)
	testenv.WriteAtomic(t, filepath.Join(dir, "garbage.example.com.crt"), []byte("not a certificate\n"))
	testenv.WriteAtomic(t, filepath.Join(dir, "garbage.example.com.key"), []byte("not a key\n"))
	goodCert, goodKey := ca.Pair(t, "half.example.com", week, "half.example.com")
	testenv.WriteAtomic(t, filepath.Join(dir, "half.example.com.crt"), goodCert[:len(goodCert)/3]) // mid-write
	testenv.WriteAtomic(t, filepath.Join(dir, "half.example.com.key"), goodKey)
	testenv.WriteAtomic(t, filepath.Join(dir, "nokey.example.com.crt"), goodCert)
	testenv.WriteAtomic(t, filepath.Join(dir, "bad;name.crt"), goodCert)
	testenv.WriteAtomic(t, filepath.Join(dir, "bad;name.key"), goodKey)

	cases := []struct{ name, want string }{
		{"good.example.com", ""},
		{"expired.example.com", "expired at"},
		{"mismatch.example.com", "private key does not match public key"},
		{"garbage.example.com", "failed to find any PEM data"},
		{"half.example.com", "failed to find any PEM data"},
		{"nokey.example.com", "no such file"},
		{"bad;name", "is not a host name"},
	}
	for _, tc := range cases {
		c, err := certs.Load(dir, tc.name, time.Now())
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && (c.Subject != tc.name || len(c.SANs) != 1 || c.Digest == ""):
			t.Errorf("%s: %+v", tc.name, c)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		case tc.want != "" && !strings.Contains(err.Error(), filepath.Join(dir, tc.name)):
			t.Errorf("%s: error %v does not name the file", tc.name, err)
		}
	}

	// The store holds only the good pair and reports each other file.
	var logs testenv.SyncBuffer
	st := certs.New(dir, certs.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	st.Scan()
	set, _ := st.Current()
	if names := set.List(); len(names) != 1 || names[0].Name != "good.example.com" {
		t.Fatalf("set %+v", names)
	}
	for _, tc := range cases[1:] {
		if !strings.Contains(logs.String(), "certificate left out") || !strings.Contains(logs.String(), tc.name+".crt") {
			t.Errorf("no report for %s:\n%s", tc.name, logs.String())
		}
	}
	before := strings.Count(logs.String(), "left out")
	st.Scan()
	if after := strings.Count(logs.String(), "left out"); after != before {
		t.Errorf("a second scan reported the same problems again (%d → %d)", before, after)
	}
}

// TestStoreFollowsTheDirectory: a pair added, renewed (a new expiry),
// broken and removed while Run watches is in the next set, once each.
func TestStoreFollowsTheDirectory(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	st := certs.New(dir, certs.WithSettle(50*time.Millisecond), certs.WithLogger(slog.New(slog.DiscardHandler)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { st.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-st.Synced()
	notify, stop := st.Subscribe()
	defer stop()

	wait := func(what string, ok func(*certs.Set) bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			if set, _ := st.Current(); ok(set) {
				return
			}
			select {
			case <-notify:
			case <-time.After(time.Second):
			case <-deadline:
				set, _ := st.Current()
				t.Fatalf("%s: set %+v", what, set.List())
			}
		}
	}
	first := time.Now().Add(48 * time.Hour).Truncate(time.Second).UTC()
	ca.Issue(t, dir, "a.example.com", "a.example.com", first, "a.example.com")
	wait("added", func(s *certs.Set) bool { c := s.Get("a.example.com"); return c != nil && c.NotAfter.Equal(first) })
	_, gen := st.Current()

	renewed := first.Add(24 * time.Hour)
	ca.Issue(t, dir, "a.example.com", "a.example.com", renewed, "a.example.com")
	wait("renewed", func(s *certs.Set) bool { c := s.Get("a.example.com"); return c != nil && c.NotAfter.Equal(renewed) })
	if _, g := st.Current(); g <= gen {
		t.Errorf("generation %d after a renewal, was %d", g, gen)
	}

	if err := os.WriteFile(filepath.Join(dir, "a.example.com.crt"), []byte("-----BEGIN CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	wait("broken", func(s *certs.Set) bool { return s.Get("a.example.com") == nil })
	ca.Issue(t, dir, "a.example.com", "a.example.com", renewed, "a.example.com")
	wait("repaired", func(s *certs.Set) bool { return s.Get("a.example.com") != nil })
	os.Remove(filepath.Join(dir, "a.example.com.crt"))
	wait("removed", func(s *certs.Set) bool { return s.Len() == 0 })
}

// TestStoreDropsExpiring: a certificate that expires while it is loaded
// leaves the set at its expiry, without a file event.
func TestStoreDropsExpiring(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	ca.Issue(t, dir, "soon.example.com", "soon.example.com", time.Now().Add(2*time.Second), "soon.example.com")
	st := certs.New(dir, certs.WithLogger(slog.New(slog.DiscardHandler)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { st.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-st.Synced()
	if set, _ := st.Current(); set.Len() != 1 {
		t.Fatalf("set %+v", set.List())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if set, _ := st.Current(); set.Len() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired certificate is still in the set")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStoreSettles: a pair written in pieces (a shell's cp, not a rename)
// is read once the directory is quiet: never half-written, so never
// reported as broken.
func TestStoreSettles(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	var logs testenv.SyncBuffer
	st := certs.New(dir, certs.WithSettle(time.Second), certs.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { st.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-st.Synced()
	cert, key := ca.Pair(t, "a.example.com", time.Now().Add(time.Hour), "a.example.com")
	write := func(name string, b []byte) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for len(b) > 0 { // in pieces, with pauses well inside the settle time
			n := min(len(b), 200)
			if _, err := f.Write(b[:n]); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
			time.Sleep(10 * time.Millisecond)
		}
	}
	write("a.example.com.crt", cert)
	write("a.example.com.key", key)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if set, _ := st.Current(); set.Get("a.example.com") != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pair is not in the set:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "left out") {
		t.Errorf("a pair being written was read half-way:\n%s", logs.String())
	}
}

// TestStoreKeepsAPairBeingReplaced: a renewal writes the new key, then
// the new certificate (acme does; cp of a pair writes them one by one);
// a scan in between keeps the last good certificate instead of dropping
// the host from HTTPS, and a pair that stays broken past ReplaceGrace
// is left out and reported as before.
func TestStoreKeepsAPairBeingReplaced(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	var logs testenv.SyncBuffer
	st := certs.New(dir, certs.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ca.Issue(t, dir, "a.example.com", "a.example.com", time.Now().Add(48*time.Hour), "a.example.com")
	st.Scan()
	set, _ := st.Current()
	old := set.Get("a.example.com")
	if old == nil {
		t.Fatalf("set %+v", set.List())
	}
	cert, key := ca.Pair(t, "a.example.com", time.Now().Add(96*time.Hour), "a.example.com")
	crtFile, keyFile := filepath.Join(dir, "a.example.com.crt"), filepath.Join(dir, "a.example.com.key")

	testenv.WriteAtomic(t, keyFile, key) // the new key next to the old certificate
	st.Scan()
	set, _ = st.Current()
	if c := set.Get("a.example.com"); c == nil || c.Digest != old.Digest {
		t.Fatalf("half replaced: %+v, want the last good pair %+v", c, old)
	}
	if strings.Contains(logs.String(), "left out") {
		t.Errorf("a pair being replaced was reported:\n%s", logs.String())
	}
	testenv.WriteAtomic(t, crtFile, cert)
	st.Scan()
	set, _ = st.Current()
	renewed := set.Get("a.example.com")
	if renewed == nil || renewed.Digest == old.Digest || !renewed.NotAfter.After(old.NotAfter) {
		t.Fatalf("replaced: %+v, want the new pair", renewed)
	}

	_, other := ca.Pair(t, "x", time.Now().Add(time.Hour), "x")
	testenv.WriteAtomic(t, keyFile, other) // a key that stays wrong
	past := time.Now().Add(-certs.ReplaceGrace - time.Second)
	for _, f := range []string{crtFile, keyFile} {
		if err := os.Chtimes(f, past, past); err != nil {
			t.Fatal(err)
		}
	}
	st.Scan()
	set, _ = st.Current()
	if c := set.Get("a.example.com"); c != nil {
		t.Errorf("a mismatched pair older than ReplaceGrace is still served: %+v", c)
	}
	if !strings.Contains(logs.String(), "private key does not match public key") {
		t.Errorf("the mismatched pair is not reported:\n%s", logs.String())
	}
}
