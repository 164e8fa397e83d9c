package certs

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/berthd/berth/records"
)

// Options are a host's HTTPS settings, nginx-proxy's container variables.
type Options struct {
	CertName string // CERT_NAME: the certificate's name, "" for the lookup by host
	Method   string // HTTPS_METHOD: redirect (""), noredirect, nohttp, nohttps
	HSTS     string // HSTS: the Strict-Transport-Security value ("" for the default), or "off"
}

// DefaultHSTS is nginx-proxy's Strict-Transport-Security value.
const DefaultHSTS = "max-age=31536000"

// Methods are the values of HTTPS_METHOD.
var Methods = []string{"redirect", "noredirect", "nohttp", "nohttps"}

var validHSTS = regexp.MustCompile(`^[A-Za-z0-9=;, -]{1,200}$`)

// CheckCertName reports whether v can be a CERT_NAME (a file base name).
func CheckCertName(v string) error {
	if !validName.MatchString(v) {
		return fmt.Errorf("CERT_NAME %q is not a certificate name (letters, digits, _ . -)", records.Truncate(v))
	}
	return nil
}

// CheckMethod reports whether v is an HTTPS_METHOD.
func CheckMethod(v string) error {
	if !slices.Contains(Methods, v) {
		return fmt.Errorf("HTTPS_METHOD %q is not redirect, noredirect, nohttp or nohttps", records.Truncate(v))
	}
	return nil
}

// CheckHSTS reports whether v can be written as a Strict-Transport-Security
// value (letters, digits, = ; , - and spaces).
func CheckHSTS(v string) error {
	if !validHSTS.MatchString(v) {
		return fmt.Errorf("HSTS %q is not a Strict-Transport-Security value (letters, digits, = ; , - space)", records.Truncate(v))
	}
	return nil
}

// HTTPS is how one host is served. Its zero value is plain HTTP only.
type HTTPS struct {
	Cert     *Match // the certificate, nil when the host is not served over HTTPS
	TLS      bool   // served over HTTPS (with Cert)
	Redirect bool   // plain HTTP answers 301 to HTTPS
	NoHTTP   bool   // plain HTTP does not serve it (nohttp)
	HSTS     string // the Strict-Transport-Security header over HTTPS, "" for none
}

// Plain reports whether plain HTTP proxies the host (not redirected, not nohttp).
func (h HTTPS) Plain() bool { return !h.Redirect && !h.NoHTTP }

// HTTPSFor decides how host is served with o (checked: see CheckMethod,
// CheckHSTS, CheckCertName), as nginx-proxy does: with a certificate
// (For) and a method other than nohttps, over HTTPS; redirect (the
// default) sends plain HTTP to HTTPS, noredirect serves both, nohttp only
// HTTPS; HSTS is sent over HTTPS unless noredirect or "off". A host whose
// certificate is only default.crt (which does not name it) is not
// redirected and gets no HSTS. A host without a certificate is plain HTTP.
func (s *Set) HTTPSFor(host string, o Options) HTTPS {
	m := s.For(host, o.CertName)
	method := o.Method
	if method == "" {
		method = "redirect"
	}
	if m == nil || method == "nohttps" {
		return HTTPS{}
	}
	if m.Via == "default" && method == "redirect" {
		method = "noredirect"
	}
	h := HTTPS{Cert: m, TLS: true, Redirect: method == "redirect", NoHTTP: method == "nohttp"}
	if method != "noredirect" && o.HSTS != "off" {
		h.HSTS = o.HSTS
		if h.HSTS == "" {
			h.HSTS = DefaultHSTS
		}
	}
	return h
}
