package registrar

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
	"github.com/berthd/berth/runtime"
)

func TestUnitMainPortAndVirtualHost(t *testing.T) {
	ports := func(ps ...uint16) []runtime.Port {
		var out []runtime.Port
		for _, p := range ps {
			out = append(out, runtime.Port{Port: p, Proto: "tcp"})
		}
		return out
	}
	tests := []struct {
		name     string
		env      []string
		ports    []runtime.Port
		wantPort int
		wantHost string // VIRTUAL_HOST kept in the record ("" = dropped)
		warn     string
	}{
		{"vhost, no exposed port: 80", []string{"VIRTUAL_HOST=a.test"}, nil, 80, "a.test", ""},
		{"vhost, one exposed port", []string{"VIRTUAL_HOST=a.test"}, ports(8080), 8080, "a.test", ""},
		{"vhost, several exposed ports: 80", []string{"VIRTUAL_HOST=a.test"}, ports(9000, 8080), 80, "a.test", ""},
		{"VIRTUAL_PORT wins", []string{"VIRTUAL_HOST=a.test", "VIRTUAL_PORT=3000"}, ports(8080), 3000, "a.test", ""},
		{"bad VIRTUAL_PORT drops the vhost", []string{"VIRTUAL_HOST=a.test", "VIRTUAL_PORT=http"}, ports(8080), 8080, "", `VIRTUAL_PORT="http" is left out: not a port`},
		{"VIRTUAL_PORT out of range: a plain service", []string{"VIRTUAL_HOST=a.test", "VIRTUAL_PORT=70000"}, nil, 0, "", `VIRTUAL_PORT="70000" is left out`},
		{"plain service: lowest exposed port", nil, ports(9000, 8080), 8080, "", ""},
		{"plain service, nothing exposed", nil, nil, 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := runtime.Container{ID: strings.Repeat("a", 64), Name: "web", Image: "web:1", State: runtime.StateRunning, Env: tc.env, Ports: tc.ports, IP: "10.0.0.2"}
			d := recordsFor("/berth", "h", c, records.StateRunning)
			raw, ok := d.kvs[records.ServiceKey("/berth", "web", "h", c.ID)]
			if !ok {
				t.Fatalf("no instance record: %v", d.kvs)
			}
			var in records.Instance
			if err := json.Unmarshal(raw, &in); err != nil {
				t.Fatal(err)
			}
			if in.Port != tc.wantPort || in.Env["VIRTUAL_HOST"] != tc.wantHost {
				t.Errorf("port %d, VIRTUAL_HOST %q; want %d, %q", in.Port, in.Env["VIRTUAL_HOST"], tc.wantPort, tc.wantHost)
			}
			got := strings.Join(d.warnings, "\n")
			if (tc.warn == "") != (got == "") || !strings.Contains(got, tc.warn) {
				t.Errorf("warnings %q, want one containing %q", got, tc.warn)
			}
		})
	}
}

// TestHostileCorpus puts every hostile value in every metadata field of a
// container that also has good metadata: the bad value is left out of both
// records and reported (on the instance record and in the warnings), the
// good metadata stays, and every key is a valid record key.
func TestUnitHostileCorpus(t *testing.T) {
	const prefix, host = "/berth", "h"
	id := strings.Repeat("c", 64)
	for _, f := range []string{"VIRTUAL_HOST", "VIRTUAL_PATH", "VIRTUAL_PORT", "VIRTUAL_PROTO", "SERVICE_NAME", "SERVICE_8080_NAME", "label berth.service", "name", "image"} {
		for _, v := range recordstest.Corpus() {
			t.Run(f+"/"+v.Case, func(t *testing.T) {
				c := runtime.Container{ID: id, Name: "web-1", Image: "web:1", State: runtime.StateRunning, IP: "10.0.0.2",
					Ports: []runtime.Port{{Port: 8080, Proto: "tcp"}},
					Env:   []string{"VIRTUAL_HOST=good.localhost", "VIRTUAL_PATH=/app/", "VIRTUAL_PROTO=http"}}
				var valid bool
				service, field := "web", f
				switch f {
				case "VIRTUAL_HOST":
					c.Env[0] += "," + v.Value
					valid = v.Valid(recordstest.Host)
				case "VIRTUAL_PATH":
					c.Env[1] = "VIRTUAL_PATH=" + v.Value
					valid = v.Valid(recordstest.Path)
				case "VIRTUAL_PORT":
					c.Env = append(c.Env, "VIRTUAL_PORT="+v.Value)
					valid = v.Valid(recordstest.Port)
				case "VIRTUAL_PROTO":
					c.Env[2] = "VIRTUAL_PROTO=" + v.Value
					valid = v.Valid(recordstest.Proto)
				case "SERVICE_NAME", "SERVICE_8080_NAME":
					c.Env = append(c.Env, f+"="+v.Value)
					valid = v.Valid(recordstest.Service)
				case "label berth.service":
					c.Labels = map[string]string{labelService: v.Value}
					valid = v.Valid(recordstest.Service)
				case "name":
					c.Name = v.Value
					valid = v.Valid(recordstest.Name)
				case "image":
					c.Image = v.Value
					valid = v.Valid(recordstest.Image)
					service = "unnamed"
					switch base := imageBase(v.Value); {
					case valid && (base != v.Value || v.Valid(recordstest.Service)):
						service = base
					case valid: // a valid image whose base name is not a valid service name
						valid, field = false, "image (its base name)"
					}
				}
				if valid && (f == "SERVICE_NAME" || f == "label berth.service") {
					service = v.Value
				}
				d := recordsFor(prefix, host, c, records.StateRunning)
				for k := range d.kvs {
					key, err := records.ParseKey(prefix, k)
					if err != nil {
						t.Fatalf("key %q: %v", k, err)
					}
					if key.Kind == records.KindService && records.CheckService(key.Service) != nil {
						t.Fatalf("key %q: service segment %q", k, key.Service)
					}
				}
				raw, ok := d.kvs[records.ServiceKey(prefix, service, host, id)]
				if !ok {
					t.Fatalf("no instance record of %q: %v", service, sortedKeys(d.kvs))
				}
				var in records.Instance
				if err := json.Unmarshal(raw, &in); err != nil {
					t.Fatal(err)
				}
				var rc records.Container
				if err := json.Unmarshal(d.kvs[records.ContainerKey(prefix, host, id)], &rc); err != nil {
					t.Fatal(err)
				}
				if valid {
					if len(in.Invalid) != 0 || len(d.warnings) != 0 {
						t.Fatalf("a valid value is reported: %+v %q", in.Invalid, d.warnings)
					}
					return
				}
				// Reported: on the record, and in a warning naming the field.
				if len(in.Invalid) == 0 || !strings.Contains(strings.Join(d.warnings, "\n"), "is left out") {
					t.Fatalf("not reported: %+v %q", in.Invalid, d.warnings)
				}
				if f == "label berth.service" {
					field = "label " + labelService
				}
				if in.Invalid[0].Field != field || (in.Invalid[0].Value != records.Truncate(v.Value) && in.Invalid[0].Value != records.Truncate(strings.TrimSpace(v.Value))) || in.Invalid[0].Reason == "" {
					t.Errorf("reported as %+v, want field %q", in.Invalid[0], field)
				}
				// Left out of both records: only the report holds it.
				if field != "image (its base name)" && len(v.Value) > 3 { // (short values occur elsewhere in a record)
					rest := in
					rest.Invalid = nil
					b, _ := json.Marshal(rest)
					if strings.Contains(string(b), v.Value) || strings.Contains(string(d.kvs[records.ContainerKey(prefix, host, id)]), v.Value) {
						t.Errorf("a record holds the value: %s", b)
					}
				}
				// The good metadata stays (an invalid VIRTUAL_PORT takes the
				// host with it: it would be routed to a port it did not ask for).
				wantHost := "good.localhost"
				if f == "VIRTUAL_PORT" {
					wantHost = ""
				}
				if in.Env["VIRTUAL_HOST"] != wantHost || rc.Env["VIRTUAL_HOST"] != wantHost {
					t.Errorf("VIRTUAL_HOST %q / container record %q, want %q", in.Env["VIRTUAL_HOST"], rc.Env["VIRTUAL_HOST"], wantHost)
				}
				if f != "VIRTUAL_PATH" && (in.Env["VIRTUAL_PATH"] != "/app/" || rc.Env["VIRTUAL_PATH"] != "/app/") {
					t.Errorf("VIRTUAL_PATH %q lost", in.Env["VIRTUAL_PATH"])
				}
				for _, k := range []string{"VIRTUAL_PATH", "VIRTUAL_PORT", "VIRTUAL_PROTO", "SERVICE_NAME", "SERVICE_8080_NAME"} {
					if k == f && (hasKey(in.Env, k) || hasKey(rc.Env, k)) {
						t.Errorf("%s kept: %q / %q", k, in.Env[k], rc.Env[k])
					}
				}
				if f == "SERVICE_8080_NAME" && in.Ports[0].Name != "" {
					t.Errorf("port name %q kept", in.Ports[0].Name)
				}
				if f == "label berth.service" && hasKey(in.Labels, labelService) {
					t.Errorf("label kept: %q", in.Labels[labelService])
				}
				if f == "name" && (in.Name != "" || rc.Name != "") {
					t.Errorf("name kept: %q / %q", in.Name, rc.Name)
				}
				if field == "image" && (in.Image != "" || rc.Image != (records.DockerImage{})) {
					t.Errorf("image kept: %q / %+v", in.Image, rc.Image)
				}
				if in.IP != "10.0.0.2" || in.Port == 0 {
					t.Errorf("address %s:%d lost", in.IP, in.Port)
				}
			})
		}
	}
}

// TestGoodRoutesStay: VIRTUAL_HOST="good.localhost,bad;host" keeps
// good.localhost; the service name falls back through its sources.
func TestUnitGoodRoutesStay(t *testing.T) {
	c := runtime.Container{ID: strings.Repeat("d", 64), Name: "web-1", Image: "registry:5000/team/web:1", State: runtime.StateRunning,
		Env:    []string{"VIRTUAL_HOST=good.localhost,bad;host", "SERVICE_NAME=../../hosts/evil", "SERVICE_TAGS=a,b;c,d", "SERVICE_WEIGHT=x"},
		Labels: map[string]string{labelService: "a/b", labelCompose: "front", labelWeight: "7"}}
	d := recordsFor("/berth", "h", c, records.StateRunning)
	raw, ok := d.kvs[records.ServiceKey("/berth", "front", "h", c.ID)]
	if !ok {
		t.Fatalf("no record under the compose service: %v", sortedKeys(d.kvs))
	}
	var in records.Instance
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	if in.Env["VIRTUAL_HOST"] != "good.localhost" || strings.Join(in.Tags, ",") != "a,d" || in.Weight != 7 {
		t.Errorf("host %q, tags %q, weight %d", in.Env["VIRTUAL_HOST"], in.Tags, in.Weight)
	}
	var fields []string
	for _, fe := range in.Invalid {
		fields = append(fields, fe.Field)
	}
	if got := strings.Join(fields, " "); got != "VIRTUAL_HOST SERVICE_TAGS label berth.service SERVICE_NAME" {
		t.Errorf("reported fields %q", got)
	}
	// SERVICE_WEIGHT is not read (the label wins), so it is not checked.
	if len(d.warnings) != 4 || !strings.Contains(d.warnings[0], `container "web-1" (dddddddddddd): VIRTUAL_HOST="bad;host" is left out:`) {
		t.Errorf("warnings %q", d.warnings)
	}
}
