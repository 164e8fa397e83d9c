package main

import (
	"github.com/spf13/pflag"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render/dialect"
)

// templateFlags are the flags that name template resources, shared by
// berth render and berth watch.
type templateFlags struct {
	configs   []string
	confdir   string
	templates []string
	dialect   string
	prefix    string
	allowNone bool // no templates is fine (berth up may only register)
}

func addTemplateFlags(f *pflag.FlagSet) *templateFlags {
	o := &templateFlags{}
	f.StringArrayVar(&o.configs, "config", nil, "berth.toml or docker-gen configuration file (repeatable)")
	f.StringVar(&o.confdir, "confdir", "", "confd directory: conf.d/*.toml resources and templates/")
	f.StringArrayVar(&o.templates, "template", nil, "SRC[:DEST[:RELOAD]] template shorthand (repeatable)")
	f.StringVar(&o.dialect, "dialect", string(dialect.Native), "dialect of --template templates: native, docker-gen or confd")
	f.StringVar(&o.prefix, "prefix", "", "key prefix of --template templates (default /berth); the global prefix of --confdir resources")
	return o
}

// load reads every template the flags name and validates them together. It
// also returns the berth.toml files read, for their other settings.
func (o *templateFlags) load() ([]config.Template, []*config.File, error) {
	var (
		ts    []config.Template
		files []*config.File
	)
	for _, file := range o.configs {
		f, err := config.Load(file)
		if err != nil {
			return nil, nil, usageError{err}
		}
		files = append(files, f)
		ts = append(ts, f.Templates...)
	}
	if o.confdir != "" {
		cts, err := config.LoadConfd(o.confdir, o.prefix)
		if err != nil {
			return nil, nil, usageError{err}
		}
		ts = append(ts, cts...)
	}
	for _, s := range o.templates {
		t, err := config.ParseTemplateFlag(s, dialect.Options{Dialect: dialect.Name(o.dialect), Prefix: o.prefix})
		if err != nil {
			return nil, nil, usageError{err}
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 && !o.allowNone {
		return nil, nil, usagef("no templates: give --config, --confdir or --template")
	}
	if err := config.Validate(ts); err != nil {
		return nil, nil, usageError{err}
	}
	return ts, files, nil
}
