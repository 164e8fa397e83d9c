package runtime_test

import (
	"errors"
	"testing"

	"github.com/berthd/berth/runtime"
)

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    runtime.Port
		wantErr bool
	}{
		{"80", runtime.Port{Port: 80, Proto: "tcp"}, false},
		{"80/tcp", runtime.Port{Port: 80, Proto: "tcp"}, false},
		{"53/udp", runtime.Port{Port: 53, Proto: "udp"}, false},
		{"9/sctp", runtime.Port{Port: 9, Proto: "sctp"}, false},
		{"65535", runtime.Port{Port: 65535, Proto: "tcp"}, false},
		{"0", runtime.Port{}, true},
		{"65536", runtime.Port{}, true},
		{"-1", runtime.Port{}, true},
		{"http", runtime.Port{}, true},
		{"80/", runtime.Port{}, true},
		{"80/icmp", runtime.Port{}, true},
		{"80-90", runtime.Port{}, true},
		{"", runtime.Port{}, true},
		{" 80", runtime.Port{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := runtime.ParsePort(tc.in)
			check(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestParsePublish(t *testing.T) {
	tests := []struct {
		in      string
		want    runtime.Port
		wantErr bool
	}{
		{"8080:80", runtime.Port{Port: 80, Proto: "tcp", HostPort: 8080}, false},
		{"8080:80/tcp", runtime.Port{Port: 80, Proto: "tcp", HostPort: 8080}, false},
		{"5353:53/udp", runtime.Port{Port: 53, Proto: "udp", HostPort: 5353}, false},
		{"127.0.0.1:8080:80", runtime.Port{Port: 80, Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8080}, false},
		{"0.0.0.0:8080:80", runtime.Port{Port: 80, Proto: "tcp", HostIP: "0.0.0.0", HostPort: 8080}, false},
		{"[::1]:8080:80/tcp", runtime.Port{Port: 80, Proto: "tcp", HostIP: "::1", HostPort: 8080}, false},
		{"80", runtime.Port{}, true},            // no host port
		{"127.0.0.1::80", runtime.Port{}, true}, // empty host port
		{":80", runtime.Port{}, true},
		{"8080:", runtime.Port{}, true},
		{"8000-8010:80-90", runtime.Port{}, true}, // ranges
		{"8080:80/icmp", runtime.Port{}, true},
		{"70000:80", runtime.Port{}, true},
		{"8080:0", runtime.Port{}, true},
		{"localhost:8080:80", runtime.Port{}, true}, // a name, not an IP
		{"1.2.3.4.5:8080:80", runtime.Port{}, true},
		{"::1:8080:80", runtime.Port{}, true}, // IPv6 unbracketed
		{"[::1:8080:80", runtime.Port{}, true},
		{"[fe80::1%eth0]:8080:80", runtime.Port{}, true},
		{"a:b:c:d", runtime.Port{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := runtime.ParsePublish(tc.in)
			check(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestParseVolume(t *testing.T) {
	tests := []struct {
		in      string
		want    runtime.Mount
		wantErr bool
	}{
		{"/srv/www:/www", runtime.Mount{Source: "/srv/www", Destination: "/www"}, false},
		{"/srv/www:/www:ro", runtime.Mount{Source: "/srv/www", Destination: "/www", ReadOnly: true}, false},
		{"/srv/www:/www:rw", runtime.Mount{Source: "/srv/www", Destination: "/www"}, false},
		{"data:/data", runtime.Mount{Source: "data", Destination: "/data"}, false}, // the caller decides
		{"/srv", runtime.Mount{}, true},
		{"/srv:", runtime.Mount{}, true},
		{":/www", runtime.Mount{}, true},
		{"/srv:www", runtime.Mount{}, true},
		{"/srv:/", runtime.Mount{}, true},
		{"/srv:/www:z", runtime.Mount{}, true},
		{"/srv:/www:ro,z", runtime.Mount{}, true},
		{"/srv:/www:RO", runtime.Mount{}, true},
		{"/srv:/www:ro:extra", runtime.Mount{}, true},
		{"", runtime.Mount{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := runtime.ParseVolume(tc.in)
			check(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func check[T comparable](t *testing.T, got T, err error, want T, wantErr bool) {
	t.Helper()
	if wantErr {
		if !errors.Is(err, runtime.ErrInvalid) {
			t.Fatalf("got %+v, %v; want an ErrInvalid", got, err)
		}
		return
	}
	if err != nil || got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
}
