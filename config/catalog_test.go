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

// TestCatalogFromRegistry: without an address, [catalog] reads the agent
// of a consul-catalog [registry] (its address, token and datacenter,
// unless the table sets them); a kv registry gives no catalog.
func TestCatalogFromRegistry(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "t.tmpl", "x")
	for _, tc := range []struct {
		name, text string
		want       Catalog
	}{
		{"registry's agent", "[registry]\nkind = \"consul-catalog\"\naddress = \"10.0.0.1:8500\"\ntoken_file = \"tok\"\ndatacenter = \"eu\"\n",
			Catalog{FromRegistry: true, Address: "10.0.0.1:8500", TokenFile: dir + "/tok", Datacenter: "eu"}},
		{"registry's default agent", "[registry]\nkind = [\"kv\", \"consul-catalog\"]\n[catalog]\nwait = \"1m\"\n",
			Catalog{FromRegistry: true, Wait: "1m"}},
		{"own token and datacenter", "[registry]\nkind = \"consul-catalog\"\naddress = \"a:1\"\ntoken = \"reg\"\ndatacenter = \"eu\"\n[catalog]\ntoken = \"cat\"\ndatacenter = \"us\"\n",
			Catalog{FromRegistry: true, Address: "a:1", Token: "cat", Datacenter: "us"}},
		{"own agent", "[registry]\nkind = \"consul-catalog\"\naddress = \"a:1\"\ntoken = \"reg\"\n[catalog]\naddress = \"b:2\"\n",
			Catalog{Address: "b:2"}},
		{"kv registry", "[registry]\nkind = \"kv\"\naddress = \"a:1\"\n", Catalog{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Load(write(t, dir, "berth.toml", tc.text+"[[template]]\nsrc = \"t.tmpl\"\ndest = \"t.out\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if f.Catalog != tc.want {
				t.Errorf("catalog %+v, want %+v", f.Catalog, tc.want)
			}
			if f.Catalog.Enabled() != (tc.want != Catalog{}) {
				t.Errorf("Enabled() = %v", f.Catalog.Enabled())
			}
		})
	}
	write(t, dir, "tok", "s3cret\n")
	f, err := Load(write(t, dir, "berth.toml", "[registry]\nkind = \"consul-catalog\"\ntoken_file = \"tok\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := f.Catalog.ReadToken(); err != nil || tok != "s3cret" {
		t.Errorf("token %q, %v", tok, err)
	}
	if _, err := Load(write(t, dir, "bad.toml", "[catalog]\ntoken = \"a\"\ntoken_file = \"tok\"\n")); err == nil || !strings.Contains(err.Error(), "[catalog] token and token_file") {
		t.Errorf("token and token_file: %v", err)
	}
}
