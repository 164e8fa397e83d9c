package daemon

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/store/memstore"
)

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

// TestUnitListenHandler: the status page is open on loopback, off (403)
// elsewhere without credentials, behind them when set; /healthz and
// /metrics are served in every case; a credentials file that cannot be
// read is a settings error.
func TestUnitListenHandler(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		listen string
		status config.Status
		bearer string
		page   int
	}{
		{"loopback", "127.0.0.1:9180", config.Status{}, "", http.StatusOK},
		{"all interfaces, no credentials", ":9180", config.Status{}, "", http.StatusForbidden},
		{"all interfaces, token missing", "0.0.0.0:9180", config.Status{TokenFile: tok}, "", http.StatusUnauthorized},
		{"all interfaces, token", "0.0.0.0:9180", config.Status{TokenFile: tok}, "s3cret", http.StatusOK},
		{"loopback, token required when set", "127.0.0.1:9180", config.Status{TokenFile: tok}, "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(memstore.New(), nil, Config{})
			if err != nil {
				t.Fatal(err)
			}
			h, err := d.listenHandler(Settings{Listen: tc.listen, Status: tc.status, StoreURL: "memory://"})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			get := func(path string) int {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
				if tc.bearer != "" {
					req.Header.Set("Authorization", "Bearer "+tc.bearer)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			for _, p := range []string{"/", "/api/v1/status"} {
				if got := get(p); got != tc.page {
					t.Errorf("GET %s: %d, want %d", p, got, tc.page)
				}
			}
			if got := get("/metrics"); got != http.StatusOK {
				t.Errorf("GET /metrics: %d", got)
			}
		})
	}
	d, err := New(memstore.New(), nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.listenHandler(Settings{Listen: ":9180", Status: config.Status{TokenFile: filepath.Join(t.TempDir(), "none")}}); !errors.Is(err, ErrSettings) {
		t.Errorf("unreadable token file: %v, want ErrSettings", err)
	}
}
