package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
)

// confdFile is one conf.d/*.toml as decoded: confd's TemplateResourceConfig.
type confdFile struct {
	Template *confdResource `toml:"template"`
}

// confdResource has every field confd reads from a template resource.
type confdResource struct {
	Src       string   `toml:"src"`
	Dest      string   `toml:"dest"`
	Keys      []string `toml:"keys"`
	Prefix    string   `toml:"prefix"`
	Mode      string   `toml:"mode"`
	UID       *int     `toml:"uid"`
	GID       *int     `toml:"gid"`
	CheckCmd  string   `toml:"check_cmd"`
	ReloadCmd string   `toml:"reload_cmd"`
}

// LoadConfd reads confd's template resources, confdir/conf.d/*.toml in
// name order, with their templates in confdir/templates. A non-empty
// prefix overrides every resource's prefix, as confd's global prefix does.
// The templates use the confd dialect and are validated (Validate).
func LoadConfd(confdir, prefix string) ([]Template, error) {
	files, err := filepath.Glob(filepath.Join(confdir, "conf.d", "*.toml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		if _, err := os.Stat(filepath.Join(confdir, "conf.d")); err != nil {
			return nil, fmt.Errorf("confdir %s: %w", confdir, err)
		}
		return nil, fmt.Errorf("confdir %s: no template resources in conf.d", confdir)
	}
	sort.Strings(files)
	var ts []Template
	for _, f := range files {
		t, err := loadConfdResource(f, filepath.Join(confdir, "templates"), prefix)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	if err := Validate(ts); err != nil {
		return nil, err
	}
	return ts, nil
}

// loadConfdResource reads one confd template resource.
func loadConfdResource(file, templates, globalPrefix string) (Template, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Template{}, err
	}
	var raw confdFile
	if err := decodeStrict(file, data, &raw); err != nil {
		return Template{}, err
	}
	if raw.Template == nil {
		return Template{}, fmt.Errorf("%s: no [template] table", file)
	}
	r := raw.Template
	origin := file
	if lines := headerLines(data, unstable.Table, "template"); len(lines) > 0 {
		origin = fmt.Sprintf("%s:%d", file, lines[0])
	}
	fail := func(err error) (Template, error) { return Template{}, fmt.Errorf("%s: %w", origin, err) }

	// confd: the global prefix wins; the result always starts with "/".
	p := r.Prefix
	if globalPrefix != "" {
		p = globalPrefix
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if len(r.Keys) == 0 {
		return fail(errors.New("keys is required"))
	}
	t := Template{
		Name:     strings.TrimSuffix(filepath.Base(file), ".toml"),
		Origin:   origin,
		Options:  dialect.Options{Dialect: dialect.Confd, Prefix: p},
		Spec:     render.Spec{Dest: r.Dest, Check: r.CheckCmd, Reload: r.ReloadCmd},
		Prefixes: make([]string, 0, len(r.Keys)),
	}
	if r.Src != "" {
		t.Src = filepath.Join(templates, r.Src)
	}
	for _, k := range r.Keys {
		t.Prefixes = append(t.Prefixes, joinKey(p, k))
	}
	if t.Spec.Mode, err = parseMode(r.Mode); err != nil {
		return fail(err)
	}
	if t.Spec.UID, err = owner("uid", r.UID, "", "", nil); err != nil {
		return fail(err)
	}
	if t.Spec.GID, err = owner("gid", r.GID, "", "", nil); err != nil {
		return fail(err)
	}
	if err := t.finish(); err != nil {
		return fail(err)
	}
	return t, nil
}
