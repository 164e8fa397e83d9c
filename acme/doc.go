// Package acme gets and renews certificates from an ACME CA (Let's
// Encrypt) for the routed hosts that ask for them: instance records whose
// env has LETSENCRYPT_HOST (acme-companion's convention, with
// LETSENCRYPT_EMAIL) or whose labels have berth.tls.acme=true (their
// VIRTUAL_HOST names). It uses lego (github.com/go-acme/lego/v5) for the
// protocol and answers HTTP-01 challenges itself (Responder), behind the
// proxy's /.well-known/acme-challenge/ location.
//
// Certificates live in the store under <prefix>/acme/certs/<host>, so every
// host sharing the store writes them as <host>.crt and <host>.key into its
// certificate directory; one host, the ACME leader (a create-only
// lease-bound key, <prefix>/acme/leader), orders them, and shares its
// budget (<prefix>/acme/budget) and its HTTP-01 tokens
// (<prefix>/acme/challenges/) there for the others. The account, the
// certificates and the order and budget state are also kept in a local
// storage directory, written atomically (keys 0600), so a crash never
// leaves half a file and never resets the budget: failed orders back off
// exponentially per name set, per registered domain and per account, and
// a name set that has a valid certificate is never ordered again before
// its renewal time, however often its container restarts.
package acme
