package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ACME is the [acme] table: certificates from an ACME CA (Let's Encrypt)
// for the containers that ask for them (LETSENCRYPT_HOST, or the label
// berth.tls.acme=true), kept by package acme:
//
//	[acme]
//	directory_url = "https://acme-v02.api.letsencrypt.org/directory"
//	email = "ops@example.com"
//	# storage = "<state_dir>/acme"       # account, certificates, budget (0600)
//	# certs_dir = "<state_dir>/certs"    # <host>.crt and <host>.key for the proxy
//	# ca_file = "pebble.minica.pem"      # trust for the ACME server's TLS (a test CA)
//	# renew_before = "30d"
//	# retry_min = "5m"                   # backoff of failed orders, doubling
//	# retry_max = "24h"
//	# challenge_listen = "127.0.0.1:0"   # the HTTP-01 responder the proxy forwards to
//
// Without directory_url, ACME is off.
type ACME struct {
	DirectoryURL    string `toml:"directory_url"`
	Email           string `toml:"email"`
	Storage         string `toml:"storage"`
	CertsDir        string `toml:"certs_dir"`
	CAFile          string `toml:"ca_file"`
	RenewBefore     string `toml:"renew_before"`
	RetryMin        string `toml:"retry_min"`
	RetryMax        string `toml:"retry_max"`
	ChallengeListen string `toml:"challenge_listen"`
}

// ACMEDurations are an ACME table's durations, parsed (0: the default).
type ACMEDurations struct {
	RenewBefore, RetryMin, RetryMax time.Duration
}

// resolve makes the paths relative to dir (the configuration's) and
// checks the values.
func (a ACME) resolve(dir string) (ACME, error) {
	a.Storage, a.CertsDir, a.CAFile = relTo(dir, a.Storage), relTo(dir, a.CertsDir), relTo(dir, a.CAFile)
	if _, err := a.Durations(); err != nil {
		return a, err
	}
	if a.DirectoryURL == "" {
		return a, nil
	}
	if u, err := url.Parse(a.DirectoryURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return a, fmt.Errorf("[acme] directory_url %q: want an https:// URL", a.DirectoryURL)
	}
	if a.ChallengeListen != "" {
		if _, _, err := net.SplitHostPort(a.ChallengeListen); err != nil {
			return a, fmt.Errorf("[acme] challenge_listen %q: want host:port", a.ChallengeListen)
		}
	}
	if a.Email != "" && (strings.Count(a.Email, "@") != 1 || strings.ContainsAny(a.Email, " ,;<>\"'")) {
		return a, fmt.Errorf("[acme] email %q: not an e-mail address", a.Email)
	}
	return a, nil
}

// Durations parses renew_before, retry_min and retry_max: Go durations,
// or a number of days ("30d").
func (a ACME) Durations() (ACMEDurations, error) {
	var d ACMEDurations
	for _, f := range []struct {
		key string
		s   string
		to  *time.Duration
	}{{"renew_before", a.RenewBefore, &d.RenewBefore}, {"retry_min", a.RetryMin, &d.RetryMin}, {"retry_max", a.RetryMax, &d.RetryMax}} {
		if f.s == "" {
			continue
		}
		if n, ok := strings.CutSuffix(f.s, "d"); ok {
			if v, err := strconv.Atoi(n); err == nil && v > 0 {
				*f.to = time.Duration(v) * 24 * time.Hour
				continue
			}
		}
		v, err := parseDuration(f.key, f.s)
		if err != nil {
			return d, fmt.Errorf("[acme] %w (or days: \"30d\")", err)
		}
		*f.to = v
	}
	return d, nil
}
