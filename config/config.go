package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/templates"
)

// Template is one template resource: what to render, from which data, and
// how to write it. Every file format loads into it.
type Template struct {
	Name   string
	Src    string // the main template file
	Origin string // "file:line" where the resource is declared, for errors

	// Options say how the template is parsed and executed: dialect,
	// missingkey, nondeterministic functions, blank lines, key prefix
	// (for confd, the resource prefix) and included files.
	Options dialect.Options

	// Prefixes are the store prefixes whose keys the template reads. For
	// confd they are the resource's keys under its prefix; for docker-gen,
	// <prefix>/containers/.
	Prefixes []string
	Wait     Wait
	// MinReloadInterval is the reload budget: no change is applied sooner
	// than this after the previous one (0: none).
	MinReloadInterval time.Duration
	// Settle is how long the template's files (main and includes) must
	// have gone without writes before an edit is re-read (settle = "200ms";
	// 0: the runner's default). An editor or a shell's ">" writes a file in
	// pieces; a version read half-way is never rendered.
	Settle time.Duration
	// MaxStale lets the template's catalog queries (service, nodes, ...)
	// be answered by any Consul server whose data is at most this old
	// (max_stale = "10s", consul-template's; 0: only the leader answers).
	MaxStale time.Duration

	// Spec is how the output is written: destination, mode, owner, backup,
	// check, reload, timeout, guards.
	Spec render.Spec

	// Live is how upstream membership reaches the proxy without a
	// reload ("nginx-lua", "haproxy"; "" renders it into the file). LiveDir is the
	// directory of its push endpoint, mode 0700 (see package endpoints).
	Live, LiveDir string

	// Dedup shares the render among the daemons that render this template
	// from the same prefixes (dedup = true): one of them, elected with a
	// lease, executes it and stores the output; the others write that
	// output through their own check and reload (package dedup).
	Dedup bool

	// DockerGen holds the docker-gen settings berth does not act on in the
	// pipeline (kept so that docker-gen files load unmodified).
	DockerGen *DockerGenExtras

	stdout bool // declared without a destination: output goes to stdout
}

// Stdout reports whether the template was declared without a destination
// (ParseTemplateFlag "SRC"): its output is meant for standard output.
func (t Template) Stdout() bool { return t.stdout }

// ParseTemplateFlag parses the command-line shorthand SRC[:DEST[:RELOAD]]
// (consul-template's -template) into a template with the given parse
// options. Without DEST the template is for standard output (Stdout).
func ParseTemplateFlag(s string, opts dialect.Options) (Template, error) {
	rest, builtin := strings.CutPrefix(s, templates.Prefix)
	parts := strings.SplitN(rest, ":", 3)
	if builtin {
		parts[0] = templates.Prefix + parts[0] // builtin:NAME[:DEST[:RELOAD]]
		if _, _, _, err := templates.Builtin(parts[0]); err != nil {
			return Template{}, fmt.Errorf("--template %q: %w", s, err)
		}
	}
	t := Template{Src: parts[0], Origin: "--template " + s, Options: opts}
	if len(parts) > 1 {
		t.Spec.Dest = parts[1]
	}
	if len(parts) > 2 {
		t.Spec.Reload = parts[2]
	}
	t.stdout = t.Spec.Dest == ""
	if err := t.finish(); err != nil {
		return Template{}, fmt.Errorf("--template %q: %w", s, err)
	}
	return t, nil
}

// DockerGenExtras are the keys of a docker-gen [[config]] beyond template,
// dest, wait, notifycmd and keepblanklines.
type DockerGenExtras struct {
	Watch                  bool
	NotifyOutput           bool
	NotifyContainers       map[string]int
	NotifyContainersFilter map[string][]string
	NotifyContainersSignal int
	ContainerFilter        map[string][]string
	Interval               time.Duration
}

// Store is the [store] table: where the key/value data lives and how to
// authenticate to it.
type Store struct {
	URL      string `toml:"url"`
	CA       string `toml:"ca"`
	Cert     string `toml:"cert"`
	Key      string `toml:"key"`
	Username string `toml:"username"`
	Password string `toml:"password"`
	Token    string `toml:"token"`
}

// Runtime is the [runtime] table: which containers berth up follows.
type Runtime struct {
	Kind string `toml:"kind"` // "embedded", "docker" or "none"
	// The embedded runtime's network and cgroups.
	Subnet       string `toml:"subnet"`        // of the container bridge
	Bridge       string `toml:"bridge"`        // its name
	CgroupParent string `toml:"cgroup_parent"` // cgroup the containers' cgroups go under
}

// Daemon is the [daemon] table: how berth up registers this host's
// containers and where it serves its APIs. Durations are Go durations;
// empty fields keep the command's defaults.
type Daemon struct {
	Host         string `toml:"host"`          // this host's name in the key schema
	TTL          string `toml:"ttl"`           // lease of the host's records
	Drain        string `toml:"drain"`         // how long a stopped container stays "draining"
	Resync       string `toml:"resync"`        // reconcile period
	StateDir     string `toml:"state_dir"`     // runtime state and the embedded store
	Socket       string `toml:"socket"`        // berth API (unix socket)
	DockerSocket string `toml:"docker_socket"` // Docker-compatible API (unix socket)
	Listen       string `toml:"listen"`        // /metrics and /healthz (host:port)
	Advertise    string `toml:"advertise"`     // this host's address as other hosts reach it
	DedupListen  string `toml:"dedup_listen"`  // where this host's dedup leaders serve their outputs (host:port)
	Network      string `toml:"network"`       // the network a container on several is recorded at (registrar.Config.Network)
	Status       Status `toml:"status"`        // [daemon.status]: who may read the status page (status.go)
}

// File is a loaded berth.toml.
type File struct {
	Path    string
	Store   Store
	Runtime Runtime
	Daemon  Daemon
	Certs   Certs   // [certs]: the certificate directory (certs.go)
	Catalog Catalog // [catalog]: the Consul catalog of service, nodes ... (catalog.go)
	ACME    ACME    // [acme] (acme.go)
	// Registry is where berth up registers the containers (registry.go).
	Registry Registry
	Wait     Wait   // default for templates without their own
	Prefix   string // berth key prefix (records.DefaultPrefix)
	// MinReloadInterval is the default reload budget of its templates.
	MinReloadInterval time.Duration
	// Settle is the default settle window of its templates' files.
	Settle    time.Duration
	Templates []Template
}

// berthFile is berth.toml as decoded.
type berthFile struct {
	Store             Store           `toml:"store"`
	Runtime           Runtime         `toml:"runtime"`
	Daemon            Daemon          `toml:"daemon"`
	Certs             Certs           `toml:"certs"`
	Catalog           Catalog         `toml:"catalog"`
	Registry          registryTable   `toml:"registry"`
	ACME              ACME            `toml:"acme"`
	Wait              string          `toml:"wait"`
	MinReloadInterval string          `toml:"min_reload_interval"`
	Settle            string          `toml:"settle"`
	Prefix            string          `toml:"prefix"`
	Template          []berthTemplate `toml:"template"`
}

// berthTemplate is one [[template]] as decoded. Besides the keys every
// template needs (name, src, dest, dialect, prefixes, includes, wait), it
// holds the guards of the write pipeline:
//
//   - min_entries = N refuses a render that counts fewer than N records
//     (keys; containers for docker-gen): the last good file stays.
//   - max_shrink = "50%" refuses a render whose record count dropped by
//     more than that from the last good render, also the last one before a
//     restart (the count is kept beside dest), so that records lost to a
//     store outage or an expired lease cannot empty the proxy.
//   - allow_empty = true lets an empty (or white-space only) output replace
//     a dest that is not empty. By default that is refused, whatever
//     min_entries says, and logged.
//   - max_stale = "10s" lets any Consul server answer the template's
//     catalog queries with data at most that old (consul-template's
//     max_stale; default: the leader only). See Catalog.
//   - settle = "200ms" is how long src and its includes must have gone
//     without writes before an edit is re-read (default: the top-level
//     settle, else 200ms). An edit that does not parse keeps the previous
//     version.
//
// and how the output is checked:
//
//   - check is run before the swap on a staged copy of the output, beside
//     dest ({{.src}} is its path). That suits a whole configuration:
//     check = "nginx -t -q -c {{.src}}" (with -p when its relative paths
//     need a prefix).
//   - check_in_place = true runs check on the real configuration instead:
//     the new file is swapped in, check runs ({{.src}} is dest), and on
//     failure the previous file is swapped back, before any reload. Both
//     swaps are atomic renames; a renderer killed in between leaves a
//     rollback file that the next render puts back.
//
// check_in_place is the recipe for a conf.d fragment, which is only valid
// inside the nginx.conf that includes it, and whose staged copy
// (.default.conf.berth-NNN) no "include conf.d/*.conf" sees:
//
//	[[template]]
//	src = "templates/nginx.tmpl"
//	dest = "/etc/nginx/conf.d/default.conf"
//	check = "nginx -t -q"
//	check_in_place = true
//	reload = "nginx -s reload"
//	max_shrink = "50%"
//
// A check that fails on data changed since the last good render
// quarantines the records responsible (see package runner); the others
// still apply.
type berthTemplate struct {
	Name                  string   `toml:"name"`
	Src                   string   `toml:"src"`
	Dest                  string   `toml:"dest"`
	Dialect               string   `toml:"dialect"`
	Prefix                string   `toml:"prefix"`
	Prefixes              []string `toml:"prefixes"`
	Includes              []string `toml:"includes"`
	Wait                  string   `toml:"wait"`
	MinReloadInterval     string   `toml:"min_reload_interval"`
	Settle                string   `toml:"settle"`
	MaxStale              string   `toml:"max_stale"`
	Mode                  string   `toml:"mode"`
	UID                   *int     `toml:"uid"`
	GID                   *int     `toml:"gid"`
	User                  string   `toml:"user"`
	Group                 string   `toml:"group"`
	Backup                bool     `toml:"backup"`
	Check                 string   `toml:"check"`
	Reload                string   `toml:"reload"`
	GenerationCheck       string   `toml:"generation_check"`
	Timeout               string   `toml:"timeout"`
	MinEntries            int      `toml:"min_entries"`
	MaxShrink             string   `toml:"max_shrink"`
	AllowEmpty            bool     `toml:"allow_empty"`
	CheckInPlace          bool     `toml:"check_in_place"`
	MissingKey            string   `toml:"missingkey"`
	AllowNondeterministic bool     `toml:"allow_nondeterministic"`
	KeepBlankLines        bool     `toml:"keep_blank_lines"`
	Live                  string   `toml:"live"`
	LiveDir               string   `toml:"live_dir"`
	Dedup                 bool     `toml:"dedup"`
}

// Load reads a berth.toml. Relative src, includes and dest paths are
// relative to the file's directory (a daemon's working directory is
// rarely the configuration's). The templates are validated (Validate).
//
// A docker-gen configuration file ([[config]] sections) is accepted too:
// its templates come back in a File with every other setting at its default.
func Load(file string) (*File, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if isDockerGen(data) {
		ts, err := loadDockerGen(file, data, "")
		if err != nil {
			return nil, err
		}
		return &File{Path: file, Prefix: records.DefaultPrefix, Templates: ts}, nil
	}
	var raw berthFile
	if err := decodeStrict(file, data, &raw); err != nil {
		return nil, err
	}
	f := &File{Path: file, Store: raw.Store, Runtime: raw.Runtime, Daemon: raw.Daemon, Catalog: raw.Catalog, Prefix: raw.Prefix}
	if _, err := raw.Catalog.WaitTime(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for what, v := range map[string]string{"ttl": raw.Daemon.TTL, "drain": raw.Daemon.Drain, "resync": raw.Daemon.Resync} {
		parse := parseDuration
		if what == "drain" {
			parse = parseDurationOrZero // "0s": no drain
		}
		if _, err := parse(what, v); err != nil {
			origin := file
			if lines := headerLines(data, unstable.Table, "daemon"); len(lines) > 0 {
				origin = fmt.Sprintf("%s:%d", file, lines[0])
			}
			return nil, fmt.Errorf("%s: [daemon] %w", origin, err)
		}
	}
	// Paths in the file are relative to its directory, made absolute: they
	// end up in commands ({{.src}}) that may run elsewhere (nginx -p).
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	f.Daemon.StateDir = relTo(dir, raw.Daemon.StateDir)
	f.Daemon.Socket = relTo(dir, raw.Daemon.Socket)
	f.Daemon.DockerSocket = relTo(dir, raw.Daemon.DockerSocket)
	f.Daemon.Status = raw.Daemon.Status.resolve(dir)
	f.Certs = raw.Certs.resolve(dir)
	if f.Registry, err = raw.Registry.resolve(dir); err != nil {
		origin := file
		if lines := headerLines(data, unstable.Table, "registry"); len(lines) > 0 {
			origin = fmt.Sprintf("%s:%d", file, lines[0])
		}
		return nil, fmt.Errorf("%s: [registry] %w", origin, err)
	}
	if f.Catalog, err = f.Catalog.withRegistry(f.Registry, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if f.ACME, err = raw.ACME.resolve(dir); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if f.Prefix == "" {
		f.Prefix = records.DefaultPrefix
	}
	if f.Wait, err = ParseWait(raw.Wait); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if f.MinReloadInterval, err = parseDuration("min_reload_interval", raw.MinReloadInterval); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if f.Settle, err = parseDuration("settle", raw.Settle); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	switch f.Runtime.Kind {
	case "", "embedded", "docker", "none":
	default:
		return nil, fmt.Errorf("%s: runtime kind %q: want embedded, docker or none", file, f.Runtime.Kind)
	}
	lines := headerLines(data, unstable.ArrayTable, "template")
	for i, rt := range raw.Template {
		origin := file
		if i < len(lines) {
			origin = fmt.Sprintf("%s:%d", file, lines[i])
		}
		t, err := rt.template(origin, dir, f)
		if err != nil {
			return nil, err
		}
		f.Templates = append(f.Templates, t)
	}
	if err := Validate(f.Templates); err != nil {
		return nil, err
	}
	return f, nil
}

// template resolves one decoded [[template]].
func (rt berthTemplate) template(origin, dir string, f *File) (Template, error) {
	t := Template{
		Name:   rt.Name,
		Src:    templatePath(dir, rt.Src),
		Origin: origin,
		Options: dialect.Options{
			Dialect:               dialect.Name(rt.Dialect),
			Prefix:                rt.Prefix,
			AllowNondeterministic: rt.AllowNondeterministic,
			KeepBlankLines:        rt.KeepBlankLines,
		},
		Prefixes:          rt.Prefixes,
		Wait:              f.Wait,
		MinReloadInterval: f.MinReloadInterval,
		Settle:            f.Settle,
		Spec: render.Spec{
			Name: rt.Name, Dest: relTo(dir, rt.Dest), UID: rt.UID, GID: rt.GID,
			Backup: rt.Backup, Check: rt.Check, Reload: rt.Reload, GenerationCheck: rt.GenerationCheck, MinEntries: rt.MinEntries,
			AllowEmpty: rt.AllowEmpty, CheckInPlace: rt.CheckInPlace,
		},
	}
	for _, inc := range rt.Includes {
		t.Options.Includes = append(t.Options.Includes, templatePath(dir, inc))
	}
	fail := func(format string, args ...any) (Template, error) {
		return Template{}, fmt.Errorf("%s: template %q: %s", origin, t.label(), fmt.Sprintf(format, args...))
	}
	for i, p := range append([]string{t.Src}, t.Options.Includes...) {
		if _, _, _, err := templates.Builtin(p); err != nil {
			return fail("%s: %v", map[bool]string{true: "src", false: "includes"}[i == 0], err)
		}
	}
	var err error
	if t.Options.Prefix == "" {
		t.Options.Prefix = f.Prefix
	}
	if rt.Wait != "" {
		if t.Wait, err = ParseWait(rt.Wait); err != nil {
			return fail("%v", err)
		}
	}
	if t.Spec.Mode, err = parseMode(rt.Mode); err != nil {
		return fail("%v", err)
	}
	if t.Spec.Timeout, err = parseDuration("timeout", rt.Timeout); err != nil {
		return fail("%v", err)
	}
	if rt.MinReloadInterval != "" {
		if t.MinReloadInterval, err = parseDuration("min_reload_interval", rt.MinReloadInterval); err != nil {
			return fail("%v", err)
		}
	}
	if rt.Settle != "" {
		if t.Settle, err = parseDuration("settle", rt.Settle); err != nil {
			return fail("%v", err)
		}
	}
	if rt.MaxStale != "" {
		if t.MaxStale, err = parseDuration("max_stale", rt.MaxStale); err != nil {
			return fail("%v", err)
		}
	}
	if t.Spec.MaxShrink, err = parseShrink(rt.MaxShrink); err != nil {
		return fail("%v", err)
	}
	if rt.MinEntries < 0 {
		return fail("min_entries %d is negative", rt.MinEntries)
	}
	if rt.GenerationCheck != "" && rt.Reload == "" {
		return fail("generation_check needs a reload command")
	}
	if rt.CheckInPlace && rt.Check == "" {
		return fail("check_in_place needs a check command")
	}
	switch rt.MissingKey {
	case "", "default":
	case "error":
		t.Options.MissingKeyError = true
	default:
		return fail("missingkey %q: want \"error\" or \"default\"", rt.MissingKey)
	}
	if t.Spec.UID, err = owner("uid", rt.UID, "user", rt.User, lookupUser); err != nil {
		return fail("%v", err)
	}
	if t.Spec.GID, err = owner("gid", rt.GID, "group", rt.Group, lookupGroup); err != nil {
		return fail("%v", err)
	}
	if err := t.finish(); err != nil {
		return fail("%v", err)
	}
	if err := t.setLive(rt.Live, relTo(dir, rt.LiveDir)); err != nil {
		return fail("%v", err)
	}
	if t.Dedup = rt.Dedup; t.Dedup && t.Live != "" {
		return fail("dedup and live cannot be combined: a follower has no records to build the live endpoint set from")
	}
	return t, nil
}

// finish fills the defaults every format shares and checks what every
// template needs.
func (t *Template) finish() error {
	o := &t.Options
	if o.Dialect == "" {
		o.Dialect = dialect.Native
	}
	if t.Src == "" {
		return errors.New("src is required")
	}
	if t.Spec.Dest == "" && !t.stdout {
		return errors.New("dest is required")
	}
	if t.Name == "" {
		t.Name = cmp.Or(t.Spec.Dest, t.Src)
	}
	t.Spec.Name = t.Name
	if o.Prefix == "" && o.Dialect != dialect.Confd {
		o.Prefix = records.DefaultPrefix
	}
	switch o.Dialect {
	case dialect.Native:
		if len(t.Prefixes) == 0 {
			t.Prefixes = []string{strings.TrimSuffix(o.Prefix, "/") + "/"}
		}
	case dialect.DockerGen:
		if len(t.Prefixes) == 0 {
			t.Prefixes = []string{records.ContainersPrefix(o.Prefix)}
		}
	case dialect.Confd:
	default:
		return fmt.Errorf("dialect %q: want native, docker-gen or confd", o.Dialect)
	}
	for _, p := range t.Prefixes {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("prefix %q does not start with /", p)
		}
	}
	if err := render.ValidateCommand("check", t.Spec.Check); err != nil {
		return err
	}
	if err := render.ValidateCommand("reload", t.Spec.Reload); err != nil {
		return err
	}
	if o.AllowNondeterministic && o.Dialect != dialect.Native {
		return errors.New("allow_nondeterministic is for the native dialect only")
	}
	return nil
}

func (t Template) label() string {
	if t.Name != "" {
		return t.Name
	}
	return t.Spec.Dest
}

// Validate checks a set of templates that run together, from any mix of
// files: two templates may not write the same destination, nor share a name.
func Validate(ts []Template) error {
	dests := map[string]Template{}
	names := map[string]Template{}
	lives := map[string]Template{}
	var errs []error
	for _, t := range ts {
		if o, dup := lives[t.LiveDir]; dup && t.LiveDir != "" {
			errs = append(errs, fmt.Errorf("%s: template %q: live_dir %s is also template %q's (%s)", t.Origin, t.label(), t.LiveDir, o.label(), o.Origin))
		}
		lives[t.LiveDir] = t
		if t.Spec.Dest == "" {
			continue
		}
		d := filepath.Clean(t.Spec.Dest)
		if o, dup := dests[d]; dup {
			errs = append(errs, fmt.Errorf("%s: template %q writes %s, as does template %q (%s)", t.Origin, t.label(), t.Spec.Dest, o.label(), o.Origin))
			continue
		}
		dests[d] = t
		if o, dup := names[t.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: template name %q is also used at %s", t.Origin, t.Name, o.Origin))
		}
		names[t.Name] = t
	}
	return errors.Join(errs...)
}

// decodeStrict decodes TOML into v, rejecting unknown keys; every error
// names file:line:col and the key.
func decodeStrict(file string, data []byte, v any) error {
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		errs := make([]error, 0, len(strict.Errors))
		for _, e := range strict.Errors {
			line, col := e.Position()
			errs = append(errs, fmt.Errorf("%s:%d:%d: unknown key %q", file, line, col, strings.Join(e.Key(), ".")))
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return fmt.Errorf("%s:%d:%d: %w", file, line, col, err)
	}
	return fmt.Errorf("%s: %w", file, err)
}

// headerLines returns the line of each [name] (kind unstable.Table) or
// [[name]] (unstable.ArrayTable) header, in order, so that errors found
// after decoding can still name a line.
func headerLines(data []byte, kind unstable.Kind, name string) []int {
	var p unstable.Parser
	p.Reset(data)
	var lines []int
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != kind {
			continue
		}
		it := e.Key()
		if !it.Next() {
			continue
		}
		k := it.Node()
		if string(k.Data) != name || !it.IsLast() {
			continue
		}
		line := 0
		if r := p.Range(k.Data); len(p.Raw(r)) > 0 {
			line = p.Shape(r).Start.Line
		}
		lines = append(lines, line)
	}
	return lines
}

// parseMode parses an octal file mode such as "0644" ("" is 0: keep).
func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0, nil
	}
	m, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || m == 0 || m > 0o777 {
		return 0, fmt.Errorf("mode %q: want an octal mode such as \"0644\"", s)
	}
	return os.FileMode(m), nil
}

// parseDuration parses an optional duration setting.
func parseDuration(what, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration such as \"30s\"", what, s)
	}
	return d, nil
}

// parseDurationOrZero is parseDuration for a setting where 0 means off.
func parseDurationOrZero(what, s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil && d == 0 {
		return 0, nil
	}
	return parseDuration(what, s)
}

// parseShrink parses max_shrink, "50%", into a fraction (0.5).
func parseShrink(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || !strings.HasSuffix(s, "%") || n <= 0 || n > 100 {
		return 0, fmt.Errorf("max_shrink %q: want a percentage such as \"50%%\"", s)
	}
	return n / 100, nil
}

// owner resolves a numeric id or a name (not both) to an id; nil is unset.
func owner(idKey string, id *int, nameKey, name string, lookup func(string) (int, error)) (*int, error) {
	switch {
	case id != nil && name != "":
		return nil, fmt.Errorf("both %s and %s are set", idKey, nameKey)
	case id != nil:
		if *id < 0 {
			return nil, fmt.Errorf("%s %d is negative", idKey, *id)
		}
		return id, nil
	case name != "":
		n, err := lookup(name)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", nameKey, name, err)
		}
		return &n, nil
	}
	return nil, nil
}

func lookupUser(name string) (int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(u.Uid)
}

func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// templatePath is relTo for a template file: a shipped template
// ("builtin:nginx") stays as it is.
func templatePath(dir, p string) string {
	if strings.HasPrefix(p, templates.Prefix) {
		return p
	}
	return relTo(dir, p)
}

// relTo makes a relative path relative to dir ("" stays "").
func relTo(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// joinKey joins a key to a prefix as confd does: "/" + prefix + key, cleaned.
func joinKey(prefix, key string) string {
	return path.Join("/", prefix, key)
}
