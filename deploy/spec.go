package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	units "github.com/docker/go-units"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// Spec is what a revision deploys: an image and the containers made from
// it, the options of berth run, and how many.
type Spec struct {
	Image    string `json:"image"`
	Replicas int    `json:"replicas"`
	// Container is every other option of berth run (env, labels, ports,
	// health check, resources ...). Its Name and Image are set by the
	// rollout; the label berth.service is the service's name.
	Container runtime.Spec `json:"container"`
}

// Labels berth puts on the containers a rollout starts.
const (
	LabelService  = "berth.service"         // the service, which the registrar registers them under
	LabelRevision = "berth.deploy.revision" // the revision that started them
)

// Validate checks the spec of service before anything is touched.
func (s Spec) Validate(service string) error {
	if err := records.CheckService(service); err != nil {
		return runtime.Errorf(runtime.ErrInvalid, "service %q: %v", service, err)
	}
	if s.Image == "" {
		return runtime.Errorf(runtime.ErrInvalid, "service %s: no image", service)
	}
	if err := records.CheckImage(s.Image); err != nil && !strings.HasPrefix(s.Image, "sha256:") {
		return runtime.Errorf(runtime.ErrInvalid, "service %s: image %q: %v", service, s.Image, err)
	}
	if s.Replicas < 1 || s.Replicas > 1000 {
		return runtime.Errorf(runtime.ErrInvalid, "service %s: replicas %d: want 1 to 1000", service, s.Replicas)
	}
	if v, ok := s.Container.Labels[LabelService]; ok && v != service {
		return runtime.Errorf(runtime.ErrInvalid, "service %s: label %s=%q names another service", service, LabelService, v)
	}
	if h := s.Container.Health; h != nil && len(h.Cmd) == 0 {
		return runtime.Errorf(runtime.ErrInvalid, "service %s: health check without a command", service)
	}
	return nil
}

// File is a service spec file (berth deploy SERVICE -f service.toml). Its
// keys are berth run's flags:
//
//	image = "web:2"                 # required
//	replicas = 3                    # default 1
//	cmd = ["httpd", "-f"]           # default: the image's
//	entrypoint = ["/bin/app"]
//	env = ["VIRTUAL_HOST=web.localhost"]
//	labels = { team = "edge" }
//	publish = ["127.0.0.1:8080:80"]
//	volumes = ["/srv/data:/data:ro", "./www:/www"]  # relative: to this file's directory
//	workdir = "/app"
//	user = "1000"
//	network = "bridge"
//	memory = "64m"
//	cpus = 0.5
//	pids_limit = 100
//	stop_signal = "SIGTERM"
//	read_only = false
//	[health]                        # run with /bin/sh -c, as --health-cmd
//	cmd = "test -f /www/index.html"
//	interval = "1s"                 # default 30s
//	timeout = "1s"                  # default 30s
//	retries = 3
//	start_period = "0s"
type File struct {
	Image      string            `toml:"image"`
	Replicas   int               `toml:"replicas"`
	Cmd        []string          `toml:"cmd"`
	Entrypoint []string          `toml:"entrypoint"`
	Env        []string          `toml:"env"`
	Labels     map[string]string `toml:"labels"`
	Publish    []string          `toml:"publish"`
	Volumes    []string          `toml:"volumes"`
	Workdir    string            `toml:"workdir"`
	User       string            `toml:"user"`
	Network    string            `toml:"network"`
	Memory     string            `toml:"memory"`
	CPUs       float64           `toml:"cpus"`
	PidsLimit  int64             `toml:"pids_limit"`
	StopSignal string            `toml:"stop_signal"`
	ReadOnly   bool              `toml:"read_only"`
	Health     *struct {
		Cmd         string `toml:"cmd"`
		Interval    string `toml:"interval"`
		Timeout     string `toml:"timeout"`
		Retries     int    `toml:"retries"`
		StartPeriod string `toml:"start_period"`
	} `toml:"health"`
}

// LoadSpec reads a spec file. Every error names file:line (unknown keys,
// bad values, wrong types).
func LoadSpec(file string) (Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Spec{}, runtime.Errorf(runtime.ErrInvalid, "spec file: %w", err)
	}
	return ParseSpec(file, data)
}

// ParseSpec parses the contents of a spec file; file names it in errors.
func ParseSpec(file string, data []byte) (Spec, error) {
	var f File
	if err := config.DecodeStrict(file, data, &f); err != nil {
		return Spec{}, runtime.Errorf(runtime.ErrInvalid, "%w", err)
	}
	// Values decoded, checked now: name the key's line.
	bad := func(key, format string, args ...any) error {
		return runtime.Errorf(runtime.ErrInvalid, "%s:%d: %s: %s", file, keyLine(data, key), key, fmt.Sprintf(format, args...))
	}
	s := Spec{Image: f.Image, Replicas: f.Replicas}
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	if f.Image == "" {
		return Spec{}, runtime.Errorf(runtime.ErrInvalid, "%s: image: required", file)
	}
	c := runtime.Spec{
		Cmd: f.Cmd, Entrypoint: f.Entrypoint, Env: f.Env, Labels: f.Labels, WorkingDir: f.Workdir, User: f.User,
		Network: f.Network, CPUs: f.CPUs, PidsLimit: f.PidsLimit, StopSignal: f.StopSignal, ReadOnly: f.ReadOnly,
	}
	for _, e := range f.Env {
		if !strings.Contains(e, "=") {
			return Spec{}, bad("env", "%q: want KEY=VALUE", e)
		}
	}
	if f.Memory != "" {
		m, err := units.RAMInBytes(f.Memory)
		if err != nil || m <= 0 {
			return Spec{}, bad("memory", "%q: want a size such as 64m or 1g", f.Memory)
		}
		c.Memory = m
	}
	for _, p := range f.Publish {
		port, err := runtime.ParsePublish(p)
		if err != nil {
			return Spec{}, bad("publish", "%q: %v", p, err)
		}
		c.Publish = append(c.Publish, port)
	}
	for _, v := range f.Volumes {
		m, err := runtime.ParseVolume(v)
		if err != nil {
			return Spec{}, bad("volumes", "%q: %v", v, err)
		}
		// A relative source is the spec file's neighbour, wherever
		// berth deploy runs from.
		if !filepath.IsAbs(m.Source) {
			if m.Source, err = filepath.Abs(filepath.Join(filepath.Dir(file), m.Source)); err != nil {
				return Spec{}, bad("volumes", "%q: %v", v, err)
			}
		}
		c.Volumes = append(c.Volumes, m)
	}
	if h := f.Health; h != nil {
		if h.Cmd == "" {
			return Spec{}, bad("cmd", "the health check needs a command")
		}
		hc := &runtime.HealthCheck{Cmd: []string{"/bin/sh", "-c", h.Cmd}, Retries: h.Retries,
			Interval: 30 * time.Second, Timeout: 30 * time.Second}
		if hc.Retries == 0 {
			hc.Retries = 3
		}
		for _, d := range []struct {
			key, val string
			to       *time.Duration
		}{{"interval", h.Interval, &hc.Interval}, {"timeout", h.Timeout, &hc.Timeout}, {"start_period", h.StartPeriod, &hc.StartPeriod}} {
			if d.val == "" {
				continue
			}
			v, err := time.ParseDuration(d.val)
			if err != nil || v < 0 {
				return Spec{}, bad(d.key, "%q: want a duration such as 1s", d.val)
			}
			*d.to = v
		}
		c.Health = hc
	}
	s.Container = c
	return s, nil
}

// keyLine is the first line where key is assigned (1 if none is found).
func keyLine(data []byte, key string) int {
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
			return i + 1
		}
	}
	return 1
}
