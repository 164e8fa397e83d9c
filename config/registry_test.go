package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRegistryLoad(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       Registry
		err        string // in the error, with the file:line of [registry]
	}{
		{"default", "", Registry{}, ""},
		{"kv", "[registry]\nkind = \"kv\"\n", Registry{Kinds: []string{"kv"}}, ""},
		{"catalog", "[registry]\nkind = \"consul-catalog\"\naddress = \"127.0.0.1:8500\"\ntoken_file = \"consul.token\"\ndatacenter = \"dc1\"\ncheck_ttl = \"15s\"\nderegister_after = \"2m\"\n",
			Registry{Kinds: []string{"consul-catalog"}, Address: "127.0.0.1:8500", TokenFile: "consul.token", Datacenter: "dc1", CheckTTL: 15 * time.Second, DeregisterAfter: 2 * time.Minute}, ""},
		{"both", "[registry]\nkind = [\"kv\", \"consul-catalog\"]\n", Registry{Kinds: []string{"kv", "consul-catalog"}}, ""},
		{"unknown kind", "[registry]\nkind = \"etcd\"\n", Registry{}, `:1: [registry] kind "etcd": want "kv" or "consul-catalog"`},
		{"twice", "\n[registry]\nkind = [\"kv\", \"kv\"]\n", Registry{}, `:2: [registry] kind "kv" given twice`},
		{"empty list", "[registry]\nkind = []\n", Registry{}, "empty list"},
		{"not a string", "[registry]\nkind = [1]\n", Registry{}, "not a string"},
		{"short dereg", "[registry]\nkind = \"consul-catalog\"\nderegister_after = \"30s\"\n", Registry{}, `deregister_after "30s": Consul's minimum is 1m0s`},
		{"short ttl", "[registry]\ncheck_ttl = \"1s\"\n", Registry{}, `check_ttl "1s": want at least 3s`},
		{"bad ttl", "[registry]\ncheck_ttl = \"soon\"\n", Registry{}, `check_ttl "soon"`},
		{"both tokens", "[registry]\ntoken = \"a\"\ntoken_file = \"b\"\n", Registry{}, "set one"},
		{"unknown key", "[registry]\nadress = \"x\"\n", Registry{}, `unknown key "registry.adress"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := write(t, dir, "berth.toml", tc.toml)
			f, err := Load(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.TokenFile != "" {
				tc.want.TokenFile = filepath.Join(dir, tc.want.TokenFile)
			}
			got := f.Registry
			if !slices.Equal(got.Kinds, tc.want.Kinds) || got.Address != tc.want.Address || got.TokenFile != tc.want.TokenFile ||
				got.Datacenter != tc.want.Datacenter || got.CheckTTL != tc.want.CheckTTL || got.DeregisterAfter != tc.want.DeregisterAfter {
				t.Errorf("registry = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRegistryHasAndToken(t *testing.T) {
	if !(Registry{}).Has(RegistryKV) || (Registry{}).Has(RegistryConsulCatalog) {
		t.Error("the default registry is kv alone")
	}
	if r := (Registry{Kinds: []string{RegistryConsulCatalog}}); r.Has(RegistryKV) || !r.Has(RegistryConsulCatalog) {
		t.Error("consul-catalog alone")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	os.WriteFile(p, []byte(" secret\n"), 0o600)
	if tok, err := (Registry{TokenFile: p}).ReadToken(); err != nil || tok != "secret" {
		t.Errorf("ReadToken = %q, %v", tok, err)
	}
	os.WriteFile(p, nil, 0o600)
	if _, err := (Registry{TokenFile: p}).ReadToken(); err == nil || !strings.Contains(err.Error(), "token_file") {
		t.Errorf("empty token file: %v", err)
	}
	if _, err := (Registry{TokenFile: filepath.Join(dir, "missing")}).ReadToken(); err == nil || !strings.Contains(err.Error(), "token_file") {
		t.Errorf("missing token file: %v", err)
	}
}
