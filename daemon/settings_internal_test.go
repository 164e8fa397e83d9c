package daemon

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/berthd/berth/config"
)

// TestValidateTokenFiles: a token file that cannot be read is a settings
// error found before the runtime (and its bridge) is created.
func TestValidateTokenFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "consul.token")
	for _, tc := range []struct {
		name string
		d    Config
	}{
		{"registry", Config{Registry: config.Registry{Kinds: []string{config.RegistryConsulCatalog}, TokenFile: missing}}},
		{"catalog", Config{Catalog: config.Catalog{Address: "127.0.0.1:8500", TokenFile: missing}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Settings{Runtime: RuntimeNone, Daemon: tc.d}
			if err := s.validate(); !errors.Is(err, ErrSettings) {
				t.Fatalf("validate = %v, want ErrSettings naming the token file", err)
			}
		})
	}
	if err := (Settings{Runtime: RuntimeNone}).validate(); err != nil {
		t.Fatalf("validate without registry or catalog = %v", err)
	}
}
