package dialect

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/records"
)

// httpsHostsFunc is {{httpsHosts .Services .Certs}}: how each host name
// of the running instances' VIRTUAL_HOST is served over HTTP and HTTPS
// (certs.Set.HTTPSFor), from the first instance (services in name order)
// that sets each of CERT_NAME, HTTPS_METHOD and HSTS. A value that does
// not pass its check is reported with warn and not used (an invalid
// CERT_NAME names no certificate: the default one). Host names are as the
// shipped templates key them: trimmed, lower case unless a regular
// expression; invalid ones are skipped (the templates report them). The
// values are certs.HTTPS.
func httpsHostsFunc(x *execution) func(map[string][]records.Instance, *certs.Set) map[string]any {
	warn := warnFunc(x)
	return func(services map[string][]records.Instance, set *certs.Set) map[string]any {
		opts := map[string]*certs.Options{}
		var order []string
		for _, svc := range slices.Sorted(maps.Keys(services)) {
			for _, in := range services[svc] {
				if in.State != records.StateRunning || in.Env["VIRTUAL_HOST"] == "" || in.IP == "" || in.Port == 0 {
					continue
				}
				who := fmt.Sprintf("container %q (%q)", nginxComment(in.Name), nginxComment(in.ID))
				for _, h := range strings.Split(in.Env["VIRTUAL_HOST"], ",") {
					h = strings.TrimSpace(h)
					if h == "" || records.CheckHost(h) != nil {
						continue
					}
					if !strings.HasPrefix(h, "~") {
						h = strings.ToLower(h)
					}
					o := opts[h]
					if o == nil {
						o = &certs.Options{}
						opts[h] = o
						order = append(order, h)
					}
					take(&o.Method, in.Env["HTTPS_METHOD"], certs.CheckMethod, who, ": redirect", warn)
					take(&o.HSTS, in.Env["HSTS"], func(v string) error {
						if v == "off" {
							return nil
						}
						return certs.CheckHSTS(v)
					}, who, ": "+certs.DefaultHSTS, warn)
					if o.CertName == "" && in.Env["CERT_NAME"] != "" {
						if err := certs.CheckCertName(in.Env["CERT_NAME"]); err != nil {
							o.CertName = "/" // names no certificate: the default
							warn(fmt.Sprintf("%s: %v: the default certificate", who, err))
						} else {
							o.CertName = in.Env["CERT_NAME"]
						}
					}
				}
			}
		}
		out := make(map[string]any, len(opts)) // a dict, for sprig's keys and get
		for _, h := range order {
			out[h] = set.HTTPSFor(h, *opts[h])
		}
		return out
	}
}

// take sets *dst to v when *dst is unset and v is set and passes check;
// a v that fails is reported with what is used instead.
func take(dst *string, v string, check func(string) error, who, instead string, warn func(string) string) {
	if *dst != "" || v == "" {
		return
	}
	if err := check(v); err != nil {
		warn(fmt.Sprintf("%s: %v%s", who, err, instead))
		return
	}
	*dst = v
}
