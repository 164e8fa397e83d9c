package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadCatalog(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "t.tmpl", "x")
	f, err := Load(write(t, dir, "berth.toml", `
[catalog]
address = "https://consul.example:8501"
token = "secret"
wait = "1m"

[[template]]
src = "t.tmpl"
dest = "t.out"
max_stale = "10s"
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Catalog != (Catalog{Address: "https://consul.example:8501", Token: "secret", Wait: "1m"}) {
		t.Fatalf("catalog: %+v", f.Catalog)
	}
	if w, err := f.Catalog.WaitTime(); err != nil || w != time.Minute {
		t.Fatalf("wait: %v %v", w, err)
	}
	if f.Templates[0].MaxStale != 10*time.Second {
		t.Fatalf("max_stale: %v", f.Templates[0].MaxStale)
	}
	for _, tc := range []struct{ text, want string }{
		{"[catalog]\nwait = \"soon\"\n", "[catalog] wait"},
		{"[[template]]\nsrc = \"t.tmpl\"\ndest = \"t.out\"\nmax_stale = \"-\"\n", "max_stale"},
		{"[catalog]\nadress = \"x\"\n", "adress"},
	} {
		if _, err := Load(write(t, dir, "bad.toml", tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.text, err, tc.want)
		}
	}
}
