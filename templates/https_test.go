package templates_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
)

// goldenCerts is a certificate store's content for the golden files:
// fixed names, expiries and digests.
func goldenCerts(withDefault bool) *certs.Set {
	exp := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	var list []certs.Cert
	for i, n := range []string{"exact.example.com", "wild.example.com", "shared", "noredirect.example.com", "nohttp.example.com", "nohttps.example.com", "hsts.example.com", "hostile.example.com", "default"} {
		if n == "default" && !withDefault {
			continue
		}
		list = append(list, certs.Cert{Name: n, CertFile: "/etc/berth/certs/" + n + ".crt", KeyFile: "/etc/berth/certs/" + n + ".key",
			Subject: n, SANs: []string{n}, NotAfter: exp.Add(time.Duration(i) * time.Hour), Digest: "0123456789abcdef0123456789abcdef"})
	}
	return certs.NewSet("/etc/berth/certs", list)
}

// renderHTTPS renders src over testdata/https.json with set as .Certs.
func renderHTTPS(t *testing.T, src string, includes []string, set *certs.Set, env map[string]string) ([]byte, []string) {
	t.Helper()
	tm, err := dialect.Parse(src, dialect.Options{Dialect: dialect.Native, Includes: includes})
	if err != nil {
		t.Fatal(err)
	}
	fx, err := render.ReadFixture(filepath.Join("testdata", "https.json"))
	if err != nil {
		t.Fatal(err)
	}
	in := fx.Input([]string{"/berth/services/"})
	in.Env, in.Certs = env, set
	var warnings []string
	in.Warn = func(m string) { warnings = append(warnings, m) }
	var buf bytes.Buffer
	if err := tm.Execute(&buf, in); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), warnings
}

// TestHTTPSGolden: nginx-proxy's lookup order, HTTPS_METHOD, HSTS, the
// default TLS server with and without default.crt, the ACME challenge
// location, and the hostile values reported and left out.
func TestHTTPSGolden(t *testing.T) {
	cases := []struct {
		name        string
		withDefault bool
		env         map[string]string
	}{
		{"https", true, map[string]string{}},
		{"https-nodefault", false, map[string]string{"BERTH_NGINX_HTTPS_LISTEN": "127.0.0.1:8443"}},
		{"https-acme", true, map[string]string{"BERTH_ACME_CHALLENGE": "127.0.0.1:8402"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, warnings := renderHTTPS(t, "nginx.tmpl", nil, goldenCerts(tc.withDefault), tc.env)
			want := []string{
				`container "hostile" ("a9"): HTTPS_METHOD "sometimes" is not redirect, noredirect, nohttp or nohttps: redirect`,
				`container "hostile" ("a9"): HSTS "max-age=1\"; return 200 $x" is not a Strict-Transport-Security value (letters, digits, = ; , - space): max-age=31536000`,
				`container "hostile" ("a9"): CERT_NAME "../../etc/passwd" is not a certificate name (letters, digits, _ . -): the default certificate`,
			}
			if !slices.Equal(warnings, want) {
				t.Errorf("warnings\n%q\nwant\n%q", warnings, want)
			}
			golden := filepath.Join("testdata", "golden", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want2, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./templates -update)", err)
			}
			if !bytes.Equal(got, want2) {
				t.Fatalf("differs from %s:\n%s", golden, render.Diff(golden, "rendered", want2, got))
			}
		})
	}
}

// TestHAProxyHTTPSGolden: haproxy.cfg.tmpl's TLS bind (default.crt first,
// strict-sni without it) and per-host rules over the same hosts.
func TestHAProxyHTTPSGolden(t *testing.T) {
	cases := []struct {
		name        string
		withDefault bool
		env         map[string]string
	}{
		{"haproxy-https", true, map[string]string{"BERTH_ACME_CHALLENGE": "127.0.0.1:8402"}},
		{"haproxy-https-nodefault", false, map[string]string{"BERTH_HAPROXY_HTTPS_LISTEN": "127.0.0.1:8443"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := renderHTTPS(t, "haproxy.cfg.tmpl", nil, goldenCerts(tc.withDefault), tc.env)
			golden := filepath.Join("testdata", "golden", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./templates -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("differs from %s:\n%s", golden, render.Diff(golden, "rendered", want, got))
			}
		})
	}
}
