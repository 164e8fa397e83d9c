package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	units "github.com/docker/go-units"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// The docker CLI's --format: "json" prints one JSON object per line, a Go
// template is executed per item ("table TEMPLATE" adds a header row and
// aligns the columns), and "" or "table" keeps the command's own table.
// The functions are docker's: json, join, lower, upper, title, split,
// truncate, pad.

// formatter prints items with a --format value; items are the rows the
// template sees (docker's field names).
type formatter struct {
	json  bool
	table bool
	tmpl  *template.Template
}

// newFormatter parses a --format value. ok is false for "" and "table":
// the caller prints its default table.
func newFormatter(format string) (f formatter, ok bool, err error) {
	switch strings.TrimSpace(format) {
	case "", "table":
		return f, false, nil
	case "json":
		return formatter{json: true}, true, nil
	}
	text, table := strings.CutPrefix(format, "table ")
	if table {
		text = strings.TrimSpace(text)
	}
	text = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(text)
	t, err := template.New("format").Option("missingkey=error").Funcs(formatFuncs).Parse(text)
	if err != nil {
		return f, false, usagef("--format: %v", err)
	}
	return formatter{table: table, tmpl: t}, true, nil
}

var formatFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"split": strings.Split,
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
	"pad": func(s string, before, after int) string {
		return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
	},
}

// print writes every item. header maps a template field name to its
// column title, for "table TEMPLATE".
func (f formatter) print(w io.Writer, items []any, header func(field string) string) error {
	if f.json {
		enc := json.NewEncoder(w)
		for _, it := range items {
			if err := enc.Encode(it); err != nil {
				return err
			}
		}
		return nil
	}
	out := w
	var tw *tabwriter.Writer
	if f.table {
		tw = tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		out = tw
		fmt.Fprintln(tw, tableHeader(f.tmpl, header))
	}
	for _, it := range items {
		var b strings.Builder
		if err := f.tmpl.Execute(&b, it); err != nil {
			return usagef("--format: %v", err)
		}
		fmt.Fprintln(out, b.String())
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

// tableHeader is the header row of a "table" template: each {{.Field}}
// replaced by its column title.
func tableHeader(t *template.Template, header func(string) string) string {
	text := t.Root.String()
	var b strings.Builder
	for {
		i := strings.Index(text, "{{")
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i])
		j := strings.Index(text[i:], "}}")
		if j < 0 {
			return b.String()
		}
		action := text[i+2 : i+j]
		field := ""
		for _, word := range strings.Fields(action) {
			if strings.HasPrefix(word, ".") {
				field = strings.SplitN(word[1:], ".", 2)[0]
				break
			}
		}
		b.WriteString(header(field))
		text = text[i+j+2:]
	}
}

// psRow is what a `berth ps --format` template sees: docker ps's fields.
type psRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status, Names, Networks, Mounts string
	Labels                                                                                   string
	LabelMap                                                                                 map[string]string `json:"-"`
	// Invalid is the metadata the registrar left out of the records, and
	// why: "FIELD=\"value\": reason; ..." (records.Instance.Invalid).
	Invalid string
}

// Label returns one label's value, as docker ps's {{.Label "k"}}.
func (r psRow) Label(k string) string { return r.LabelMap[k] }

var psHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
	"RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Names": "NAMES",
	"Networks": "NETWORKS", "Mounts": "MOUNTS", "Labels": "LABELS", "Label": "LABEL", "Invalid": "LEFT OUT",
}

func newPsRow(c runtime.Container, noTrunc bool, invalid []records.FieldError) psRow {
	id, command := c.ID, strings.Join(c.Cmd, " ")
	if !noTrunc {
		id = id[:min(12, len(id))]
		if len(command) > 20 {
			command = command[:19] + "…"
		}
	}
	var portList string
	if c.Running() {
		portList = ports(c.Ports) // as docker: a stopped container publishes nothing
	}
	var nets, mounts, labels []string
	for _, n := range c.Networks {
		nets = append(nets, n.Name)
	}
	for _, m := range c.Mounts {
		mounts = append(mounts, m.Source)
	}
	for k, v := range c.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	return psRow{
		ID: id, Image: c.Image, Command: fmt.Sprintf("%q", command),
		CreatedAt: c.Created.Format("2006-01-02 15:04:05 -0700 MST"), RunningFor: units.HumanDuration(time.Since(c.Created)) + " ago",
		Ports: portList, State: string(c.State), Status: status(c), Names: c.Name,
		Networks: strings.Join(nets, ","), Mounts: strings.Join(mounts, ","), Labels: strings.Join(labels, ","), LabelMap: c.Labels,
		Invalid: joinFieldErrors(invalid),
	}
}

// psFilter is one --filter of berth ps, docker's names: id, name, label,
// status, ancestor. Filters of one name are ORed, different names ANDed,
// as in docker.
type psFilter map[string][]string

func parsePsFilters(args []string) (psFilter, error) {
	f := psFilter{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || v == "" {
			return nil, usagef("--filter %q: want NAME=VALUE (id, name, label, status, ancestor)", a)
		}
		switch k {
		case "id", "name", "label", "ancestor":
		case "status":
			switch runtime.State(v) {
			case runtime.StateCreated, runtime.StateRunning, runtime.StateExited, runtime.StateRestarting, runtime.StateDead, "paused", "removing":
			default:
				return nil, usagef("--filter %q: status is one of created, restarting, running, removing, paused, exited, dead", a)
			}
		default:
			return nil, usagef("--filter %q: berth ps filters on id, name, label, status and ancestor", a)
		}
		f[k] = append(f[k], v)
	}
	return f, nil
}

// labels are the label filters, which the daemon applies.
func (f psFilter) labels() []string { return f["label"] }

// match applies the filters the daemon does not (all but label).
func (f psFilter) match(c runtime.Container) bool {
	oneOf := func(name string, ok func(v string) bool) bool {
		vs := f[name]
		if len(vs) == 0 {
			return true
		}
		for _, v := range vs {
			if ok(v) {
				return true
			}
		}
		return false
	}
	return oneOf("id", func(v string) bool { return strings.HasPrefix(c.ID, v) }) &&
		oneOf("name", func(v string) bool {
			return strings.Contains(strings.TrimPrefix(c.Name, "/"), strings.TrimPrefix(v, "/"))
		}) &&
		oneOf("status", func(v string) bool { return string(c.State) == v }) &&
		oneOf("ancestor", func(v string) bool { return ancestorMatch(c, v) })
}

// ancestorMatch: docker's ancestor filter by reference (with or without
// the tag, :latest implied) or by image id prefix.
func ancestorMatch(c runtime.Container, v string) bool {
	if strings.HasPrefix(v, "sha256:") || (len(v) >= 12 && !strings.ContainsAny(v, ":/")) {
		id := strings.TrimPrefix(c.ImageID, "sha256:")
		return id != "" && strings.HasPrefix(id, strings.TrimPrefix(v, "sha256:"))
	}
	norm := func(ref string) string {
		if i := strings.LastIndexByte(ref, ':'); i < 0 || strings.Contains(ref[i:], "/") {
			ref += ":latest"
		}
		return ref
	}
	img := norm(c.Image)
	if norm(v) == img {
		return true
	}
	// "repo" matches every tag of repo.
	if !strings.Contains(path.Base(v), ":") {
		return strings.HasPrefix(img, v+":")
	}
	return false
}

// joinFieldErrors is "FIELD=\"value\": reason; ..." ("" for none).
func joinFieldErrors(fes []records.FieldError) string {
	parts := make([]string, len(fes))
	for i, fe := range fes {
		parts[i] = fe.String()
	}
	return strings.Join(parts, "; ")
}
