package acme

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/store"
)

// ChallengePath is where HTTP-01 challenges are fetched; the proxy routes
// it to the Responder (the shipped nginx template does when its env has
// BERTH_ACME_CHALLENGE).
const ChallengePath = "/.well-known/acme-challenge/"

// challengeTTL bounds how long a shared token outlives its order.
const challengeTTL = 10 * time.Minute

// Responder answers HTTP-01 challenges: lego's challenge.Provider (Present
// and CleanUp keep the tokens in memory) and the http.Handler the proxy
// forwards /.well-known/acme-challenge/ to. A token is unguessable, so it
// is answered whatever Host the proxy passes on.
//
// With hosts sharing a store, the CA may reach any of them: a Manager
// also puts its tokens in the store (<prefix>/acme/challenges/<token>,
// bound to its lease), and a Responder that does not hold a token in
// memory looks it up there.
type Responder struct {
	mu     sync.Mutex
	tokens map[string]string // token → key authorization
	st     store.Store       // nil: memory only
	prefix string            // of the shared tokens
}

// NewResponder returns a Responder with no tokens.
func NewResponder() *Responder { return &Responder{tokens: map[string]string{}} }

// share makes r put its tokens under prefix in st and look them up there.
func (r *Responder) share(st store.Store, prefix string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st, r.prefix = st, prefix
}

// validToken reports whether t is base64url (RFC 8555 §8.3): the only
// tokens looked up, so no path or key can be made of one.
func validToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Present makes token answer keyAuth, here and, when shared, on every
// host.
func (r *Responder) Present(ctx context.Context, _, token, keyAuth string) error {
	r.mu.Lock()
	r.tokens[token] = keyAuth
	st, prefix := r.st, r.prefix
	r.mu.Unlock()
	if st != nil && validToken(token) {
		// Refused (the store away): this host still answers it.
		_, _ = st.Put(ctx, prefix+token, []byte(keyAuth), store.WithTTL(challengeTTL))
	}
	return nil
}

// CleanUp forgets token.
func (r *Responder) CleanUp(ctx context.Context, _, token, _ string) error {
	r.mu.Lock()
	delete(r.tokens, token)
	st, prefix := r.st, r.prefix
	r.mu.Unlock()
	if st != nil && validToken(token) {
		_, _ = st.Delete(context.WithoutCancel(ctx), prefix+token)
	}
	return nil
}

// ServeHTTP answers GET ChallengePath+token with its key authorization,
// anything else with 404.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	token, ok := strings.CutPrefix(req.URL.Path, ChallengePath)
	if !ok || !validToken(token) || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	ka, ok := r.tokens[token]
	st, prefix := r.st, r.prefix
	r.mu.Unlock()
	if !ok && st != nil {
		ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
		kv, err := st.Get(ctx, prefix+token)
		cancel()
		ka, ok = string(kv.Value), err == nil
	}
	if !ok {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(ka))
}
