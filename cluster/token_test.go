package cluster_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/cluster"
)

func TestParseToken(t *testing.T) {
	pin, secret := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"valid", "berth1." + pin + "." + secret, true},
		{"surrounding space", " berth1." + pin + "." + secret + "\n", true},
		{"upper-case hex", "berth1." + strings.ToUpper(pin) + "." + secret, true},
		{"empty", "", false},
		{"other version", "berth2." + pin + "." + secret, false},
		{"short pin", "berth1.abcd." + secret, false},
		{"not hex", "berth1." + strings.Repeat("zz", 32) + "." + secret, false},
		{"missing secret", "berth1." + pin, false},
		{"extra part", "berth1." + pin + "." + secret + ".x", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := cluster.ParseToken(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseToken(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, cluster.ErrBadToken) {
				t.Errorf("error %v is not ErrBadToken", err)
			}
			if tc.ok && tok.String() != "berth1."+pin+"."+secret {
				t.Errorf("String() = %q", tok.String())
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"edge-1": true, "host.example": true, "a": true, "h_2": true,
		"": false, "-x": false, "a=b": false, "a,b": false, "a/b": false, strings.Repeat("a", 64): false,
	} {
		if err := cluster.CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// TestJoinUnreachable: a join service that does not answer is a bounded
// wait, then the reason.
func TestJoinUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tok := cluster.Token{Pin: strings.Repeat("ab", 32), Secret: strings.Repeat("cd", 32)}.String()
	start := time.Now()
	_, err = cluster.Join(context.Background(), t.TempDir(), "https://"+addr, tok, "h1", net.IPv4(127, 0, 0, 1),
		cluster.WithJoinTimeout(1500*time.Millisecond))
	took := time.Since(start)
	if !errors.Is(err, cluster.ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Join = %v, want ErrUnreachable naming the refused connection", err)
	}
	if took > 10*time.Second {
		t.Errorf("Join waited %s with a 1.5s timeout", took)
	}
}
