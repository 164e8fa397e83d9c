package consul

import (
	"testing"
	"time"
)

func TestSessionTTL(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, 0},
		{-time.Second, 0},
		{time.Second, 10 * time.Second},      // Consul's minimum
		{10 * time.Second, 10 * time.Second}, // exact
		{15400 * time.Millisecond, 15 * time.Second},
		{15600 * time.Millisecond, 16 * time.Second},
		{48 * time.Hour, 24 * time.Hour}, // Consul's maximum
	}
	for _, tt := range tests {
		if got := sessionTTL(tt.in); got != tt.want {
			t.Errorf("sessionTTL(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestKeyMapping(t *testing.T) {
	for _, key := range []string{"/berth/services/web/h1/abc", "/", "/with space/ü"} {
		if got := berthKey(consulKey(key)); got != key {
			t.Errorf("berthKey(consulKey(%q)) = %q", key, got)
		}
	}
	if got := consulKey("/berth/x"); got != "berth/x" {
		t.Errorf("consulKey(/berth/x) = %q, want berth/x", got)
	}
}
