package api_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/api"
)

// TestUnreachableSocket: the error says what is wrong with the socket and
// what to do, for the cases a user meets.
func TestUnreachableSocket(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the socket file stays, nothing listens: a dead daemon's
	if _, err := os.Stat(stale); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sock, want string }{
		{filepath.Join(dir, "missing.sock"), "no such socket: is berth up running?"},
		{stale, "connection refused: nothing listens on it"},
		{"unix://" + stale, "connection refused: nothing listens on it"}, // -H as docker's
	} {
		_, err := api.NewClient(tc.sock).List(t.Context())
		tc.sock = strings.TrimPrefix(tc.sock, "unix://") // named as a path
		if err == nil || !strings.Contains(err.Error(), "cannot reach the berth daemon at "+tc.sock) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant it to contain %q", tc.sock, err, tc.want)
		}
	}
}
