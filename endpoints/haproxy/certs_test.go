package haproxy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/internal/testenv"
)

// TestSetCertRefusals: a certificate HAProxy has not loaded, or a
// payload that is no certificate, is refused with an error naming the
// command, and the connection stays usable; a file name that cannot be
// sent is refused before anything is sent.
func TestSetCertRefusals(t *testing.T) {
	h, _ := startProxy(t, nil, "a.localhost")
	ctx := t.Context()
	c, err := haproxy.NewClient(h.Socket).Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ca := testenv.NewCA(t)
	cert, key := ca.Pair(t, "a.localhost", time.Now().Add(time.Hour), "a.localhost")
	cases := []struct {
		name string
		file string
		pem  []byte
		want []string
	}{
		{"not loaded", "/nowhere/a.crt", append(cert, key...), []string{`"set ssl cert /nowhere/a.crt"`}},
		{"injection", "/x.crt;shutdown", cert, []string{"cannot be sent"}},
		{"newline", "/x.crt\nshow info", cert, []string{"cannot be sent"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.SetCert(ctx, tc.file, tc.pem)
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, endpoints.ErrUnavailable) {
				t.Fatalf("%v: a refusal is not the proxy being unavailable", err)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: want %q in it", err, w)
				}
			}
		})
	}
	if files, err := c.LoadedCerts(ctx); err != nil || len(files) != 0 {
		t.Errorf("loaded certificates %q, %v (want none, and a usable connection)", files, err)
	}
}
