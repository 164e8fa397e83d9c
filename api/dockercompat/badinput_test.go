package dockercompat_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestBadInput: API versions out of range, unknown endpoints, malformed
// bodies, bad filters and references answer dockerd's status and a JSON
// message, and the server keeps serving.
func TestBadInput(t *testing.T) {
	d := startDaemon(t)
	hc := d.httpClient()
	do := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://docker"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	// A busybox container to point requests at.
	resp, body := do("POST", "/containers/create?name=ok1", `{"Image":"busybox:test","Cmd":["true"]}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}

	tests := []struct {
		method, path, body string
		status             int
		message            string // a substring of the JSON message
	}{
		{"GET", "/v1.23/version", "", 400, "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"},
		{"GET", "/v1.52/version", "", 400, "client version 1.52 is too new. Maximum supported API version is 1.51"},
		{"GET", "/v2.0/containers/json", "", 400, "client version 2.0 is too new"},
		{"GET", "/v1..2/version", "", 400, "invalid API version"},
		{"GET", "/nosuch", "", 404, "page not found"},
		{"POST", "/v1.51/containers/ok1/top", "", 404, "page not found"},
		{"POST", "/v1.51/containers/ok1/pause", "", 404, "page not found"},
		{"POST", "/containers/create", `{"Image":"busybox:test","Tty":true,"OpenStdin":true}`, 400, "run without -it"},
		{"GET", "/volumes/nosuch", "", 404, "get nosuch: no such volume"},
		{"POST", "/containers/create", "{not json", 400, "invalid JSON"},
		{"POST", "/containers/create", "", 400, "request body is empty"},
		{"POST", "/containers/create", `{"Image":""}`, 400, "no image specified"},
		{"POST", "/containers/create", `{"Image":"busybox:test","ExposedPorts":{"x/tcp":{}}}`, 400, "invalid JSON"},
		{"POST", "/containers/create?name=bad/name", `{"Image":"busybox:test"}`, 400, "Invalid container name (bad/name)"},
		{"POST", "/containers/create?name=ok1", `{"Image":"busybox:test","Cmd":["true"]}`, 409, `The container name "/ok1" is already in use`},
		{"POST", "/containers/create", `{"Image":"nosuch:1"}`, 404, "No such image: nosuch:1"},
		{"POST", "/containers/create", `{"Image":"busybox:test","HostConfig":{"NetworkMode":"mynet"}}`, 404, "network mynet not found"},
		{"POST", "/containers/create", `{"Image":"busybox:test","HostConfig":{"Privileged":true}}`, 400, "privileged"},
		{"POST", "/containers/create", `{"Image":"busybox:test","HostConfig":{"Binds":["vol:/data"]}}`, 400, "host-path binds only"},
		{"POST", "/containers/create", `{"Image":"busybox:test","HostConfig":{"Binds":["/srv:/data:z"]}}`, 400, "berth supports ro and rw only"},
		{"POST", "/containers/create", `{"Image":"busybox:test","HostConfig":{"Binds":["/srv:data"]}}`, 400, "the destination must be an absolute path"},
		{"POST", "/containers/create", `{"Image":"busybox:test","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}`, 400, "invalid restart policy"},
		{"POST", "/containers/create", `{"Image":"busybox:test","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"99999"}]}}}`, 400, "invalid host port"},
		{"GET", "/containers/json?filters={bad", "", 400, "invalid filters"},
		{"GET", `/containers/json?filters={"colour":["x"]}`, "", 400, "invalid filter 'colour'"},
		{"GET", `/containers/json?filters={"status":{"sleeping":true}}`, "", 400, "invalid filter 'status=sleeping'"},
		{"GET", `/containers/json?filters={"expose":["eighty"]}`, "", 400, "invalid port filter"},
		{"GET", `/containers/json?limit=many`, "", 400, "not an integer"},
		{"GET", `/events?filters={"bogus":{"x":true}}`, "", 400, "invalid filter 'bogus'"},
		{"GET", "/events?since=yesterday", "", 400, "invalid since timestamp"},
		{"GET", "/containers/nosuch/json", "", 404, "No such container: nosuch"},
		{"POST", "/containers/nosuch/start", "", 404, "No such container: nosuch"},
		{"POST", "/containers/nosuch/stop", "", 404, "No such container: nosuch"},
		{"DELETE", "/containers/nosuch", "", 404, "No such container: nosuch"},
		{"GET", "/containers/ok1/logs", "", 400, "you must choose at least one stream"},
		{"GET", "/containers/ok1/logs?stdout=1&tail=last", "", 400, "invalid value for tail"},
		{"POST", "/containers/ok1/wait?condition=bogus", "", 400, "invalid condition"},
		{"POST", "/containers/ok1/kill", "", 409, "is not running"},
		{"POST", "/containers/ok1/kill?signal=NOPE", "", 400, "invalid signal"},
		{"POST", "/containers/ok1/stop?t=soon", "", 400, "not an integer"},
		{"POST", "/containers/ok1/exec", `{"Cmd":[]}`, 400, "No exec command specified"},
		{"POST", "/containers/ok1/exec", `{"Cmd":["true"]}`, 409, "is not running"},
		{"POST", "/exec/nosuch/start", `{}`, 404, "No such exec instance"},
		{"GET", "/networks/nosuch", "", 404, "network nosuch not found"},
		{"GET", `/networks?filters={"colour":["x"]}`, "", 400, "invalid filter 'colour'"},
		{"GET", "/images/nosuch:1/json", "", 404, "No such image: nosuch:1"},
		{"DELETE", "/images/nosuch:1", "", 404, "No such image: nosuch:1"},
		{"POST", "/images/create", "", 400, "fromImage is required"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := do(tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var e struct{ Message string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Message, tc.message) {
				t.Errorf("body %q (%v), want a message containing %q", body, err, tc.message)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if resp.Header.Get("Api-Version") != "1.51" || resp.Header.Get("Ostype") != "linux" || !strings.HasPrefix(resp.Header.Get("Server"), "berth/") {
				t.Errorf("headers %v", resp.Header)
			}
		})
	}

	// Start of a started container: 304; stop of a stopped one: 304.
	resp, _ = do("POST", "/containers/ok1/stop", "")
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("stop of a created container: %d, want 304", resp.StatusCode)
	}
	// Versioned and unversioned paths, HEAD and GET ping.
	for _, p := range []string{"/_ping", "/v1.24/_ping", "/v1.51/_ping"} {
		resp, body := do("GET", p, "")
		if resp.StatusCode != 200 || body != "OK" || resp.Header.Get("Api-Version") != "1.51" || resp.Header.Get("Swarm") != "inactive" {
			t.Errorf("GET %s: %d %q %v", p, resp.StatusCode, body, resp.Header)
		}
	}
	resp, body = do("HEAD", "/_ping", "")
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Api-Version") != "1.51" {
		t.Errorf("HEAD /_ping: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// Unknown endpoints are logged once per method and path.
	if n := strings.Count(d.log.String(), "unsupported endpoint"); n != 3 {
		t.Errorf("%d log lines about unsupported endpoints, want 3 (one each):\n%s", n, d.log.String())
	}
	do("GET", "/nosuch", "")
	if n := strings.Count(d.log.String(), "unsupported endpoint"); n != 3 {
		t.Errorf("a repeated unknown endpoint was logged again")
	}
	// Legacy inspect below 1.52 (and unversioned), none from 1.52 on is
	// not reachable (1.51 is the maximum): both forms carry IPAddress.
	for _, p := range []string{"/containers/ok1/json", "/v1.40/containers/ok1/json"} {
		_, body := do("GET", p, "")
		if !strings.Contains(body, `"IPAddress":`) || !strings.Contains(body, `"StartedAt":"0001-01-01T00:00:00Z"`) {
			t.Errorf("GET %s: %s", p, body)
		}
	}
}
