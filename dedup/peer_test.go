package dedup

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// leader starts a peer server over real TLS on loopback, with h in front
// of it when h is not nil (a hostile peer).
func leader(t *testing.T, h http.Handler) (peerIdentity, *peerServer, string) {
	t.Helper()
	id, err := newPeerIdentity()
	if err != nil {
		t.Fatal(err)
	}
	s := newPeerServer(id.secret)
	if h == nil {
		h = s
	}
	hs := httptest.NewUnstartedServer(h)
	hs.TLS = id.serverTLS()
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return id, s, hs.URL
}

func TestPeerFetch(t *testing.T) {
	id, s, base := leader(t, nil)
	out1, out2 := []byte("upstream a { server 10.0.0.1; }\n"), []byte("upstream a { server 10.0.0.2; }\n")
	s.set("abc", peerOutput{hash: hashOf(out1), count: 1, rev: 5, gzip: gz(t, out1)})
	c, err := newPeerClient(base, id.fingerprint, id.secret, "h2")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx := context.Background()
	o, got, err := c.fetch(ctx, "abc", "")
	if err != nil || !bytes.Equal(got, out1) || o.count != 1 || o.hash != hashOf(out1) || o.rev != 5 {
		t.Fatalf("fetch = %+v %q %v, want out1", o, got, err)
	}
	// Sent is not fetched: the answer may still be in the network.
	if h := s.fetchedBy("abc", "h2"); h != "" {
		t.Fatalf("leader counts h2's fetch of %q before h2 says it has it", h)
	}
	// A poll with the current hash says the follower has it, and waits
	// for the next output.
	done := make(chan error, 1)
	go func() {
		_, got, err := c.fetch(ctx, "abc", hashOf(out1))
		if err == nil && !bytes.Equal(got, out2) {
			err = errors.New("got " + string(got))
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("poll returned before a new output: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if h := s.fetchedBy("abc", "h2"); h != hashOf(out1) {
		t.Fatalf("leader saw h2 fetch %q, want %q", h, hashOf(out1))
	}
	s.set("abc", peerOutput{hash: hashOf(out2), count: 1, gzip: gz(t, out2)})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A poll with nothing new ends in 304; it confirms out2.
	s.mu.Lock()
	s.poll = 50 * time.Millisecond
	s.mu.Unlock()
	if _, _, err := c.fetch(ctx, "abc", hashOf(out2)); !errors.Is(err, errNotModified) {
		t.Fatalf("idle poll: %v, want errNotModified", err)
	}
	if h := s.fetchedBy("abc", "h2"); h != hashOf(out2) {
		t.Fatalf("leader saw h2 fetch %q, want out2's", h)
	}
}

func TestPeerRefused(t *testing.T) {
	good := []byte("good\n")
	bomb := gz(t, make([]byte, maxOutput+1))
	hostileRev := func(hash, rev string, body []byte) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(hdrHash, hash)
			w.Header().Set(hdrCount, "1")
			if rev != "" {
				w.Header().Set(hdrRevision, rev)
			}
			_, _ = w.Write(body)
		})
	}
	hostile := func(hash string, body []byte) http.Handler { return hostileRev(hash, "7", body) }
	other, err := newPeerIdentity()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + l.Addr().String()
	l.Close()

	for _, tc := range []struct {
		name    string
		peer    http.Handler                                                // nil: a true leader serving good
		client  func(id peerIdentity, base string) (string, string, string) // url, fingerprint, secret
		wantNew string                                                      // error of newPeerClient
		want    string                                                      // error of fetch
	}{
		{name: "wrong fingerprint", client: func(id peerIdentity, b string) (string, string, string) { return b, other.fingerprint, id.secret },
			want: "peer certificate fingerprint"},
		{name: "wrong secret", client: func(id peerIdentity, b string) (string, string, string) { return b, id.fingerprint, other.secret },
			want: "401"},
		{name: "closed port", client: func(id peerIdentity, b string) (string, string, string) { return closed, id.fingerprint, id.secret },
			want: "connection refused"},
		{name: "plain http url", client: func(id peerIdentity, b string) (string, string, string) {
			return strings.Replace(b, "https", "http", 1), id.fingerprint, id.secret
		}, wantNew: "not https://host:port"},
		{name: "url with path", client: func(id peerIdentity, b string) (string, string, string) { return b + "/x", id.fingerprint, id.secret },
			wantNew: "not https://host:port"},
		{name: "short fingerprint", client: func(id peerIdentity, b string) (string, string, string) { return b, "abcd", id.secret },
			wantNew: "not a hex sha256"},
		{name: "short secret", client: func(id peerIdentity, b string) (string, string, string) { return b, id.fingerprint, "ab" },
			wantNew: "secret: 2 characters"},
		{name: "garbage body", peer: hostile(hashOf(good), []byte("this is not a gzip stream at all")),
			want: "output: gzip: invalid header"},
		{name: "hash mismatch", peer: hostile(hashOf([]byte("other")), gz(t, good)),
			want: "output does not match its hash"},
		{name: "decompression bomb", peer: hostile(hashOf(good), bomb),
			want: "output larger than"},
		{name: "oversized body", peer: hostile(hashOf(good), make([]byte, maxPeerBody+1)),
			want: "body larger than"},
		{name: "no hash", peer: hostile("", gz(t, good)),
			want: "no X-Berth-Hash header"},
		{name: "no revision", peer: hostileRev(hashOf(good), "", gz(t, good)),
			want: `header X-Berth-Revision "": not a revision`},
		{name: "negative revision", peer: hostileRev(hashOf(good), "-3", gz(t, good)),
			want: `header X-Berth-Revision "-3": not a revision`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, s, base := leader(t, tc.peer)
			s.set("abc", peerOutput{hash: hashOf(good), count: 1, gzip: gz(t, good)})
			u, fp, sec := base, id.fingerprint, id.secret
			if tc.client != nil {
				u, fp, sec = tc.client(id, base)
			}
			c, err := newPeerClient(u, fp, sec, "h2")
			if tc.wantNew != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantNew) {
					t.Fatalf("newPeerClient: %v, want %q", err, tc.wantNew)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, out, err := c.fetch(ctx, "abc", "")
			if err == nil || !strings.Contains(err.Error(), tc.want) || out != nil {
				t.Fatalf("fetch = %q, %v; want error %q", out, err, tc.want)
			}
			if h := s.fetchedBy("abc", "h2"); h != "" {
				t.Fatalf("a refused fetch counts as fetched (%q)", h)
			}
		})
	}
}
