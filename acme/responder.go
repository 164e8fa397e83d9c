package acme

import (
	"context"
	"net/http"
	"strings"
	"sync"
)

// ChallengePath is where HTTP-01 challenges are fetched; the proxy routes
// it to the Responder (the shipped nginx template does when its env has
// BERTH_ACME_CHALLENGE).
const ChallengePath = "/.well-known/acme-challenge/"

// Responder answers HTTP-01 challenges: lego's challenge.Provider (Present
// and CleanUp keep the tokens in memory) and the http.Handler the proxy
// forwards /.well-known/acme-challenge/ to. A token is unguessable, so it
// is answered whatever Host the proxy passes on.
type Responder struct {
	mu     sync.Mutex
	tokens map[string]string // token → key authorization
}

// NewResponder returns a Responder with no tokens.
func NewResponder() *Responder { return &Responder{tokens: map[string]string{}} }

// Present makes token answer keyAuth.
func (r *Responder) Present(_ context.Context, _, token, keyAuth string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens[token] = keyAuth
	return nil
}

// CleanUp forgets token.
func (r *Responder) CleanUp(_ context.Context, _, token, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.tokens, token)
	return nil
}

// ServeHTTP answers GET ChallengePath+token with its key authorization,
// anything else with 404.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	token, ok := strings.CutPrefix(req.URL.Path, ChallengePath)
	if !ok || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	ka, ok := r.tokens[token]
	r.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(ka))
}
