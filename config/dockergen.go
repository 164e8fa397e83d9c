package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
)

// dockerGenFile is a docker-gen configuration file as decoded.
type dockerGenFile struct {
	Config []dockerGenConfig `toml:"config"`
}

// dockerGenConfig has every key of docker-gen's [[config]].
type dockerGenConfig struct {
	Template               string              `toml:"template"`
	Dest                   string              `toml:"dest"`
	Watch                  bool                `toml:"watch"`
	Wait                   string              `toml:"wait"`
	NotifyCmd              string              `toml:"notifycmd"`
	NotifyOutput           bool                `toml:"notifyoutput"`
	NotifyContainers       map[string]int      `toml:"notifycontainers"`
	NotifyContainersFilter map[string][]string `toml:"notifycontainersfilter"`
	NotifyContainersSignal int                 `toml:"notifycontainerssignal"`
	ContainerFilter        map[string][]string `toml:"containerfilter"`
	Interval               int                 `toml:"interval"`
	KeepBlankLines         bool                `toml:"keepblanklines"`
}

// LoadDockerGen reads a docker-gen configuration file ([[config]] sections).
// template may list several files separated by ";": the first is the main
// template, the others are parsed into the same set, as docker-gen does.
// Paths are used as given (relative to the working directory, as docker-gen
// does). prefix is berth's key prefix ("" for records.DefaultPrefix). The templates
// are validated (Validate).
func LoadDockerGen(file, prefix string) ([]Template, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return loadDockerGen(file, data, prefix)
}

// isDockerGen reports whether a TOML document is a docker-gen configuration:
// it has [[config]] sections and no [[template]] ones.
func isDockerGen(data []byte) bool {
	return len(headerLines(data, unstable.ArrayTable, "config")) > 0 &&
		len(headerLines(data, unstable.ArrayTable, "template")) == 0
}

func loadDockerGen(file string, data []byte, prefix string) ([]Template, error) {
	var raw dockerGenFile
	if err := decodeStrict(file, data, &raw); err != nil {
		return nil, err
	}
	if len(raw.Config) == 0 {
		return nil, fmt.Errorf("%s: no [[config]] sections", file)
	}
	lines := headerLines(data, unstable.ArrayTable, "config")
	var ts []Template
	for i, c := range raw.Config {
		origin := file
		if i < len(lines) {
			origin = fmt.Sprintf("%s:%d", file, lines[i])
		}
		t, err := c.template(origin, prefix)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", origin, err)
		}
		ts = append(ts, t)
	}
	if err := Validate(ts); err != nil {
		return nil, err
	}
	return ts, nil
}

func (c dockerGenConfig) template(origin, prefix string) (Template, error) {
	files := strings.Split(c.Template, ";")
	t := Template{
		Origin:  origin,
		Src:     strings.TrimSpace(files[0]),
		Options: dialect.Options{Dialect: dialect.DockerGen, Prefix: prefix, KeepBlankLines: c.KeepBlankLines},
		// AllowEmpty: docker-gen writes whatever the template gives,
		// empty included (a listing of no containers).
		Spec: render.Spec{Dest: c.Dest, Reload: c.NotifyCmd, AllowEmpty: true},
		DockerGen: &DockerGenExtras{
			Watch:                  c.Watch,
			NotifyOutput:           c.NotifyOutput,
			NotifyContainers:       c.NotifyContainers,
			NotifyContainersFilter: c.NotifyContainersFilter,
			NotifyContainersSignal: c.NotifyContainersSignal,
			ContainerFilter:        c.ContainerFilter,
			Interval:               time.Duration(c.Interval) * time.Second,
		},
	}
	for _, f := range files[1:] {
		if f = strings.TrimSpace(f); f != "" {
			t.Options.Includes = append(t.Options.Includes, f)
		}
	}
	if c.Interval < 0 {
		return Template{}, errors.New("interval is negative")
	}
	var err error
	if t.Wait, err = ParseWait(c.Wait); err != nil {
		return Template{}, err
	}
	if err := t.finish(); err != nil {
		return Template{}, err
	}
	return t, nil
}
