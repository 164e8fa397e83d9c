package records

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestKeysRoundTrip(t *testing.T) {
	tests := []struct {
		prefix string
		key    Key
		want   string
	}{
		{"", Key{Kind: KindService, Service: "web", Host: "h1", ID: "abc"}, "/berth/services/web/h1/abc"},
		{"/x/", Key{Kind: KindContainer, Host: "h1", ID: "abc"}, "/x/containers/h1/abc"},
		{"x", Key{Kind: KindHost, Host: "h1"}, "/x/hosts/h1"},
		{"/berth", Key{Kind: KindService, Service: "a.b-c", Host: "host.example", ID: "0123456789ab"}, "/berth/services/a.b-c/host.example/0123456789ab"},
	}
	for _, tt := range tests {
		got := tt.key.String(tt.prefix)
		if got != tt.want {
			t.Errorf("%+v.String(%q) = %q, want %q", tt.key, tt.prefix, got, tt.want)
		}
		if !strings.HasPrefix(got, Root(tt.prefix)) {
			t.Errorf("%q is not under Root(%q) = %q", got, tt.prefix, Root(tt.prefix))
		}
		back, err := ParseKey(tt.prefix, got)
		if err != nil {
			t.Errorf("ParseKey(%q, %q): %v", tt.prefix, got, err)
			continue
		}
		if back != tt.key {
			t.Errorf("ParseKey(%q, %q) = %+v, want %+v", tt.prefix, got, back, tt.key)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct{ key, wantErr string }{
		{"/other/services/web/h1/abc", "not under prefix"},
		{"/berth/services/web/h1", "not a record key"},
		{"/berth/services/web/h1/abc/extra", "not a record key"},
		{"/berth/services/web//abc", "bad segment"},
		{"/berth/containers/h1/..", "bad segment"},
		{"/berth/volumes/h1/abc", "not a record key"},
		{"/berthservices/web/h1/abc", "not under prefix"},
	}
	for _, tt := range tests {
		_, err := ParseKey("/berth", tt.key)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseKey(%q) error = %v, want one containing %q", tt.key, err, tt.wantErr)
		}
	}
}

// TestContainerJSONShape pins the JSON field names to docker-gen's
// RuntimeContainer (Go names, no tags), which fixtures and the store rely on.
func TestContainerJSONShape(t *testing.T) {
	c := Container{
		ID: "abc", Name: "web", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Addresses: []Address{{IP: "10.0.0.2", Port: "80", Proto: "tcp", HostPort: "8080"}},
		Image:     DockerImage{Registry: "r.example", Repository: "nginx", Tag: "1.27"},
		State:     ContainerState{Running: true, Health: ContainerHealth{Status: "healthy"}},
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ID":"abc"`, `"Created":"2026-01-02T03:04:05Z"`, `"HostPort":"8080"`,
		`"Image":{"Registry":"r.example","Repository":"nginx","Tag":"1.27"}`, `"State":{"Running":true,"Health":{"Status":"healthy"}}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	if got := c.Image.String(); got != "r.example/nginx:1.27" {
		t.Errorf("Image.String() = %q", got)
	}
	if got := c.PublishedAddresses(); len(got) != 1 || got[0].HostPort != "8080" {
		t.Errorf("PublishedAddresses() = %+v", got)
	}
}

func TestInstanceJSON(t *testing.T) {
	in := Instance{ID: "abc", Name: "web-1", Service: "web", Host: "h1", IP: "10.0.0.2", Port: 80,
		Ports:  []Port{{Port: 80, Proto: "tcp", HostPort: 8080, Name: "http"}},
		Health: HealthHealthy, State: StateRunning, Weight: 1,
		StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"abc","name":"web-1","service":"web","host":"h1","ip":"10.0.0.2","port":80,"ports":[{"port":80,"proto":"tcp","host_port":8080,"name":"http"}],"image":"","health":"healthy","state":"running","weight":1,"started_at":"2026-01-02T03:04:05Z"}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
	tests := []struct {
		ip   string
		port int
		want string
	}{{"10.0.0.2", 80, "10.0.0.2:80"}, {"fd00::2", 80, "[fd00::2]:80"}, {"", 80, ""}, {"10.0.0.2", 0, ""}}
	for _, tt := range tests {
		if got := (Instance{IP: tt.ip, Port: tt.port}).Address(); got != tt.want {
			t.Errorf("Address(%q,%d) = %q, want %q", tt.ip, tt.port, got, tt.want)
		}
	}
}

func TestParseImage(t *testing.T) {
	for _, tc := range []struct {
		ref  string
		want DockerImage
	}{
		{"nginx", DockerImage{Repository: "nginx"}},
		{"nginx:1.27", DockerImage{Repository: "nginx", Tag: "1.27"}},
		{"registry:5000/app:v2", DockerImage{Registry: "registry:5000", Repository: "app", Tag: "v2"}},
		{"library/nginx:latest", DockerImage{Registry: "library", Repository: "nginx", Tag: "latest"}},
	} {
		if got := ParseImage(tc.ref); got != tc.want {
			t.Errorf("ParseImage(%q) = %+v, want %+v", tc.ref, got, tc.want)
		}
		if tc.want.String() != tc.ref {
			t.Errorf("%+v.String() = %q, want %q", tc.want, tc.want.String(), tc.ref)
		}
	}
}
