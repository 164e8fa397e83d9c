package registrar

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// acme-companion's LETSENCRYPT_HOST and LETSENCRYPT_EMAIL reach the
// instance record (package acme reads them there); other env does not.
func TestUnitLetsEncryptEnvDeclared(t *testing.T) {
	c := runtime.Container{ID: strings.Repeat("b", 64), Name: "web", Image: "web:1", State: runtime.StateRunning, IP: "10.0.0.2",
		Env: []string{"VIRTUAL_HOST=a.example.com", "LETSENCRYPT_HOST=a.example.com", "LETSENCRYPT_EMAIL=ops@example.com", "SECRET=x"}}
	d := recordsFor("/berth", "h", c, records.StateRunning)
	var in records.Instance
	if err := json.Unmarshal(d.kvs[records.ServiceKey("/berth", "web", "h", c.ID)], &in); err != nil {
		t.Fatal(err)
	}
	if in.Env["LETSENCRYPT_HOST"] != "a.example.com" || in.Env["LETSENCRYPT_EMAIL"] != "ops@example.com" || in.Env["SECRET"] != "" {
		t.Errorf("env %v", in.Env)
	}
}
