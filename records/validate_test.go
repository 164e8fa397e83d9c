package records_test

import (
	"strings"
	"testing"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
)

// TestCorpus: every hostile value is rejected in every field where it is
// not declared valid, and accepted where it is.
func TestCorpus(t *testing.T) {
	checks := map[recordstest.Field]func(string) error{
		recordstest.Host:  records.CheckHost,
		recordstest.Path:  records.CheckPath,
		recordstest.Port:  func(s string) error { _, err := records.CheckPort(s); return err },
		recordstest.Proto: records.CheckProto,
		recordstest.Service: func(s string) error {
			return records.CheckService(s)
		},
		recordstest.Name:  records.CheckContainerName,
		recordstest.Image: records.CheckImage,
	}
	for _, v := range recordstest.Corpus() {
		for _, f := range recordstest.Fields {
			err := checks[f](v.Value)
			if v.Valid(f) && err != nil {
				t.Errorf("%s in %s: rejected: %v", v.Case, f, err)
			}
			if !v.Valid(f) && err == nil {
				t.Errorf("%s in %s: %q accepted", v.Case, f, records.Truncate(v.Value))
			}
		}
	}
}

func TestCheckHost(t *testing.T) {
	tests := []struct {
		host string
		ok   bool
	}{
		{"a.localhost", true},
		{"A-1.Example.COM", true},
		{"localhost", true},
		{"xn--bcher-kva.example", true},
		{"*.example.com", true},
		{"example.*", true},
		{"*.*", false},
		{"*", false},
		{"**.example.com", false},
		{"*example.com", false},
		{"a.*.b", false},
		{".example.com", false},
		{"~^(?<sub>[a-z0-9-]+)\\.example\\.com$", true},
		{"~^foo\\.bar\\..*\\.nip\\.io$", true},
		{"~^a{2}$", false},
		{"~^a$|^b$", false},
		{"~^$host", false},
		{"~", false},
		{"~(?=a)", false}, // look-ahead: not RE2
		{"a_b.localhost", false},
		{strings.Repeat("a", 63) + ".x", true},
		{strings.Repeat("a", 64) + ".x", false},
		{recordstest.Long253, true},
		{recordstest.Long253 + "x", false},
		{"a-.x", false},
		{"127.0.0.1", true},
		{"1.2.3", false},
		{"0", false},
		{"a.0", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := records.CheckHost(tt.host); (err == nil) != tt.ok {
			t.Errorf("CheckHost(%q) = %v, want ok=%v", tt.host, err, tt.ok)
		}
	}
	if len(recordstest.Long111) != 111 || len(recordstest.Long253) != 253 {
		t.Fatalf("corpus names are %d and %d bytes", len(recordstest.Long111), len(recordstest.Long253))
	}
}

func TestCheckHostList(t *testing.T) {
	valid, bad := records.CheckHostList("VIRTUAL_HOST", " good.localhost, bad;host ,,other.localhost")
	if strings.Join(valid, ",") != "good.localhost,other.localhost" || len(bad) != 1 || bad[0].Value != "bad;host" || bad[0].Field != "VIRTUAL_HOST" {
		t.Errorf("valid %q, bad %+v", valid, bad)
	}
	valid, bad = records.CheckHostList("VIRTUAL_HOST", strings.Repeat("a.b,", 2000))
	if len(valid) != records.MaxHosts || len(bad) != 1 || !strings.Contains(bad[0].Reason, "more than") {
		t.Errorf("oversized list: valid %d, bad %+v", len(valid), bad)
	}
}

func TestCheckPathProtoWeight(t *testing.T) {
	for _, tt := range []struct {
		path string
		ok   bool
	}{{"/", true}, {"/api/", true}, {"/a-b_c.d/%20~x", true}, {"api", false}, {"/a b", false}, {"/a;", false}, {"/..", false}, {"/a/../b", false}, {"/a..b", true}, {"~ ^/a", false}, {"/$uri", false}} {
		if err := records.CheckPath(tt.path); (err == nil) != tt.ok {
			t.Errorf("CheckPath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
		}
	}
	for _, p := range []string{"http", "HTTPS", "grpc", "grpcs", "uwsgi", "fastcgi"} {
		if err := records.CheckProto(p); err != nil {
			t.Errorf("CheckProto(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "ftp", "http ", "h2"} {
		if err := records.CheckProto(p); err == nil {
			t.Errorf("CheckProto(%q) accepted", p)
		}
	}
	for _, tt := range []struct {
		w    string
		want int
		ok   bool
	}{{"0", 0, true}, {" 10 ", 10, true}, {"256", 256, true}, {"257", 0, false}, {"-1", 0, false}, {"x", 0, false}} {
		got, err := records.CheckWeight(tt.w)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("CheckWeight(%q) = %d, %v", tt.w, got, err)
		}
	}
	for _, tt := range []struct {
		tag string
		ok  bool
	}{{"urlprefix-/api", true}, {"version=1.2", true}, {"urlprefix-/api strip=/api", true}, {"a\tb", false}, {"a\nb", false}, {"a;b", false}, {strings.Repeat("t", 129), false}} {
		if err := records.CheckTag(tt.tag); (err == nil) != tt.ok {
			t.Errorf("CheckTag(%q) = %v", tt.tag, err)
		}
	}
	for _, tt := range []struct {
		ip string
		ok bool
	}{{"10.0.0.2", true}, {"fd00::2", true}, {"fe80::1%eth0", false}, {"10.0.0.2;", false}, {"", false}} {
		if err := records.CheckIP(tt.ip); (err == nil) != tt.ok {
			t.Errorf("CheckIP(%q) = %v", tt.ip, err)
		}
	}
}

func TestFieldErrorTruncates(t *testing.T) {
	fe := records.NewFieldError("VIRTUAL_HOST", strings.Repeat("é", 100), records.CheckHost("é"))
	if !strings.HasSuffix(fe.Value, "…(200 bytes)") || len(fe.Value) > records.MaxReportedValue+20 {
		t.Errorf("value %q", fe.Value)
	}
	if got := records.NewFieldError("VIRTUAL_PATH", "/a\nb", records.CheckPath("/a\nb")).String(); got != `VIRTUAL_PATH="/a\nb": control character U+000A is not allowed in a path` {
		t.Errorf("String() = %s", got)
	}
}
