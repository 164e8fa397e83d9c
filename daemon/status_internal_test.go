package daemon

import "testing"

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9180": true, "127.1.2.3:80": true, "[::1]:9180": true, "localhost:9180": true,
		":9180": false, "0.0.0.0:9180": false, "[::]:9180": false, "10.0.0.1:9180": false, "example.com:80": false, "garbage": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
