package acme

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

// The metadata that asks for a certificate.
const (
	EnvHost   = "LETSENCRYPT_HOST"  // names, a comma list (acme-companion)
	EnvEmail  = "LETSENCRYPT_EMAIL" // the account's contact
	LabelACME = "berth.tls.acme"    // "true": the VIRTUAL_HOST names
)

// want is one name set to hold a certificate for.
type want struct {
	names []string // sorted
	email string
	from  string // the first container asking, for reports
}

func (w want) key() string { return strings.Join(w.names, ",") }

// Invalid is a name a container asked a certificate for that is never
// ordered, and why.
type Invalid struct {
	Container string `json:"container"`
	Field     string `json:"field"`
	Name      string `json:"name"`
	Reason    string `json:"reason"`
}

func (i Invalid) String() string {
	return fmt.Sprintf("container %s: %s name %q: %s", i.Container, i.Field, i.Name, i.Reason)
}

// CheckName reports whether name can be ordered through HTTP-01: a valid
// DNS name (records.CheckHost), not a wildcard, a regular expression or an
// IP address, under a public suffix (so it has a registered domain).
func CheckName(name string) error {
	if err := records.CheckHost(name); err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(name, "~"):
		return errors.New("a regular expression cannot have a certificate")
	case strings.Contains(name, "*"):
		return errors.New("a wildcard needs DNS-01, which berth does not do (HTTP-01 only)")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return errors.New("an IP address, not a DNS name")
	}
	if _, err := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(name)); err != nil {
		return fmt.Errorf("no registered domain: %w", err)
	}
	return nil
}

// registeredDomain is name's eTLD+1 (CheckName has passed).
func registeredDomain(name string) string {
	d, err := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(name))
	if err != nil {
		return strings.ToLower(name)
	}
	return d
}

// checkEmail accepts a plain address: printable ASCII, one '@', no
// separators.
func checkEmail(e string) error {
	if len(e) > 254 || strings.Count(e, "@") != 1 || strings.HasPrefix(e, "@") || strings.HasSuffix(e, "@") {
		return errors.New("not an e-mail address")
	}
	for _, r := range e {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(",;<>\"'\\()[]", r) {
			return errors.New("not an e-mail address")
		}
	}
	return nil
}

// wanted reads the name sets to certify from instance records. A name
// that fails CheckName is reported and left out, the container's other
// names stay. A name asked for by two different sets goes to the first
// (by key), so each name has one certificate.
func wanted(kvs []store.KV, prefix, defaultEmail string) ([]want, []Invalid) {
	sets := map[string]want{}
	var bad []Invalid
	seenBad := map[string]bool{}
	for _, kv := range kvs {
		k, err := records.ParseKey(prefix, kv.Key)
		if err != nil || k.Kind != records.KindService {
			continue
		}
		var in records.Instance
		if json.Unmarshal(kv.Value, &in) != nil {
			continue
		}
		field, list := EnvHost, in.Env[EnvHost]
		if list == "" && strings.EqualFold(in.Labels[LabelACME], "true") {
			field, list = "VIRTUAL_HOST", in.Env["VIRTUAL_HOST"]
		}
		if strings.TrimSpace(list) == "" {
			continue
		}
		var names []string
		for _, n := range records.SplitHosts(list) {
			if err := CheckName(n); err != nil {
				if id := in.Name + "\x00" + n; !seenBad[id] {
					seenBad[id] = true
					bad = append(bad, Invalid{Container: in.Name, Field: field, Name: records.Truncate(n), Reason: err.Error()})
				}
				continue
			}
			n = strings.ToLower(n)
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		if len(names) > 100 { // the CA's limit of names per certificate
			bad = append(bad, Invalid{Container: in.Name, Field: field, Name: strings.Join(names[100:], ","), Reason: "more than 100 names in one certificate"})
			names = names[:100]
		}
		slices.Sort(names) // the set, whatever order a restart lists it in
		email := defaultEmail
		if e := strings.TrimSpace(in.Env[EnvEmail]); e != "" {
			if err := checkEmail(e); err != nil {
				bad = append(bad, Invalid{Container: in.Name, Field: EnvEmail, Name: records.Truncate(e), Reason: err.Error() + " (the default account is used)"})
			} else {
				email = e
			}
		}
		w := want{names: names, email: email, from: in.Name}
		if old, ok := sets[w.key()]; !ok || w.from < old.from {
			sets[w.key()] = w
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range sets {
			if !yield(k) {
				return
			}
		}
	})
	taken := map[string]bool{}
	var out []want
	for _, k := range keys {
		w := sets[k]
		var names []string
		for _, n := range w.names {
			if !taken[n] {
				taken[n] = true
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		w.names = names
		out = append(out, w)
	}
	return out, bad
}
