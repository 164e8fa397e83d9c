package deploy

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/berthd/berth/runtime"
)

// probeRun is how many answers in a row below 500 make the proxy serving.
const probeRun = 5

// checkProbe validates a Request.Probe URL.
func checkProbe(service, probe string) error {
	if probe == "" {
		return nil
	}
	u, err := url.Parse(probe)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return runtime.Errorf(runtime.ErrInvalid, "service %s: probe %q: want an http:// URL of the proxy", service, probe)
	}
	return nil
}

// probeHost is the Host a probe sends: the spec's first VIRTUAL_HOST
// (the name the proxy routes the service by), else the URL's.
func probeHost(spec Spec) string {
	for _, e := range spec.Container.Env {
		if v, ok := strings.CutPrefix(e, "VIRTUAL_HOST="); ok {
			h, _, _ := strings.Cut(v, ",")
			return strings.TrimSpace(h)
		}
	}
	return ""
}

// probed waits until GETs of the proxy at probe answer below 500
// probeRun times in a row, each on a new connection (a worker of the
// proxy's previous configuration, still accepting, breaks the run).
func (ro *rollout) probed(ctx context.Context) error {
	probe := ro.req.Probe
	if probe == "" {
		return nil
	}
	host := probeHost(ro.req.Spec)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	defer c.CloseIdleConnections()
	run, why := 0, "no answer yet"
	err := ro.s.until(ctx, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, probe, nil)
		if err != nil {
			return false, err
		}
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err != nil {
			run, why = 0, err.Error()
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			run, why = 0, fmt.Sprintf("%s (Host %s) answers %s", probe, host, resp.Status)
			return false, nil
		}
		run++
		return run >= probeRun, nil
	})
	return wrapWhy(err, "the proxy does not serve the service yet: "+why)
}
