package endpoints_test

import (
	"crypto/sha1" //nolint:gosec // the name suffix under test
	"encoding/hex"
	"encoding/json"
)

func sha(s string) string {
	h := sha1.Sum([]byte(s)) //nolint:gosec // see the import
	return hex.EncodeToString(h[:])[:8]
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
