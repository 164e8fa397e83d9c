package acme

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  string // part of the reason; "" for a valid name
	}{
		{"app.example.com", ""},
		{"a-b.c.example.co.uk", ""},
		{"xn--bcher-kva.example", ""},
		{"*.example.com", "wildcard"},
		{"example.*", "wildcard"},
		{"~^app\\.example\\.com$", "regular expression"},
		{"10.0.0.1", "IP address"},
		{"bad_name.example.com", "not allowed"},
		{"-lead.example.com", "starts or ends"},
		{"trailing.example.com.", "empty label"},
		{"co.uk", "registered domain"},
		{"localhost", "registered domain"},
		{"a;b.example.com", "not allowed"},
		{strings.Repeat("a", 64) + ".example.com", "longer than"},
	} {
		err := CheckName(tc.name)
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%q: %v", tc.name, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%q: got %v, want an error about %q", tc.name, err, tc.bad)
		}
	}
}

func instanceKV(t *testing.T, id string, env, labels map[string]string) store.KV {
	b, err := json.Marshal(records.Instance{ID: id, Name: id, Service: "web", Host: "h1", Env: env, Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	return store.KV{Key: records.ServiceKey("", "web", "h1", id), Value: b}
}

func TestWanted(t *testing.T) {
	kvs := []store.KV{
		instanceKV(t, "a", map[string]string{EnvHost: "B.example.com, a.example.com,bad name,*.example.com", EnvEmail: "me@example.com"}, nil),
		instanceKV(t, "b", map[string]string{EnvHost: "a.example.com"}, nil), // also asked for by a: first set wins
		instanceKV(t, "c", map[string]string{"VIRTUAL_HOST": "lab.example.org"}, map[string]string{LabelACME: "true"}),
		instanceKV(t, "d", map[string]string{"VIRTUAL_HOST": "plain.example.org"}, nil),                                 // no ACME asked
		instanceKV(t, "e", map[string]string{EnvHost: "e.example.net", EnvEmail: "not an address"}, nil),                // default account
		instanceKV(t, "a2", map[string]string{EnvHost: "a.example.com,b.example.com", EnvEmail: "me@example.com"}, nil), // a's twin (restarted)
		{Key: records.ContainerKey("", "h1", "x"), Value: []byte(`{}`)},
	}
	got, bad := wanted(kvs, "", "ops@example.com")
	var sets []string
	for _, w := range got {
		sets = append(sets, w.key()+" "+w.email)
	}
	// a and a2 are one set (names sorted); b asks for a.example.com alone
	// and, first by key, takes it: a's set keeps b.example.com. d asks for
	// nothing; e's bad address falls back to the default account.
	if !slices.Equal(sets, []string{"a.example.com ops@example.com", "b.example.com me@example.com", "e.example.net ops@example.com", "lab.example.org ops@example.com"}) {
		t.Errorf("sets %v", sets)
	}
	var reasons []string
	for _, b := range bad {
		reasons = append(reasons, b.Field+" "+b.Name)
	}
	slices.Sort(reasons)
	if !slices.Equal(reasons, []string{"LETSENCRYPT_EMAIL not an address", "LETSENCRYPT_HOST *.example.com", "LETSENCRYPT_HOST bad name"}) {
		t.Errorf("invalid %v", reasons)
	}
}
