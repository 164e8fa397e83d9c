package explain

import (
	"fmt"
	"io"
	"strings"
	"unicode"
)

// WriteText writes the report in plain words, one thing per line.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	// Records can be written by anyone with access to the store: a
	// control character in one (an escape sequence) is shown, not sent.
	line := func(format string, args ...any) { b.WriteString(visible(fmt.Sprintf(format, args...)) + "\n") }
	switch {
	case r.Container != nil:
		c := r.Container
		line("container %s (%s)", c.Name, short(c.ID))
		if c.Runtime != nil {
			rt := c.Runtime
			s := "runtime: " + string(rt.State)
			if rt.Health != "" && rt.Health != "none" {
				s += ", health " + string(rt.Health)
			}
			line("%s", s)
		}
		if len(c.Records) == 0 {
			line("records: none at store revision %d", r.Revision)
		}
		for _, rec := range c.Records {
			if rec.Kind == "service" {
				addr := rec.Address
				if addr == "" {
					addr = "no address"
				}
				line("record %s (revision %d): instance of service %s on host %s at %s, %s, health %s", rec.Key, rec.Revision, rec.Service, rec.Host, addr, rec.State, rec.Health)
				if len(rec.Hosts) > 0 {
					line("  virtual hosts: %s", strings.Join(rec.Hosts, ", "))
				}
				continue
			}
			line("record %s (revision %d): container record", rec.Key, rec.Revision)
		}
		for _, fe := range c.Invalid {
			line("left out as invalid: %s", fe)
		}
		for _, u := range c.Upstreams {
			line("upstream: %s", u)
		}
		for _, u := range c.Uses {
			where := u.Dest
			if u.Live != "" {
				where += ", live " + u.Live
			}
			line("template %s (%s) reads %s; last rendered at revision %d", u.Template, where, strings.Join(u.Keys, ", "), u.Revision)
			switch {
			case u.Unreadable != "":
				line("  its output cannot be read: %s", u.Unreadable)
			case u.Routes:
				for _, l := range u.Found {
					line("  routes it: %s:%d: %s", u.Dest, l.N, l.Text)
				}
			case len(c.Records) > 0:
				line("  its output does not route it")
			}
		}
		if c.Routed {
			line("routed: yes")
		} else {
			line("routed: no")
		}
		for _, re := range c.Reasons {
			line("%s: %s", re.Code, re.Text)
			for _, fe := range re.Invalid {
				line("  %s", fe)
			}
		}
	case r.Host != nil:
		h := r.Host
		line("host %s", h.Name)
		if len(h.Upstreams) == 0 {
			line("no upstream serves it")
		}
		for _, u := range h.Upstreams {
			line("upstream %s: path %s, %s, %d server(s)", u.Name, u.Path, u.Proto, len(u.Servers))
			for _, s := range u.Servers {
				state := "running"
				if s.Draining {
					state = "draining"
				}
				line("  server %s: container %s (%s), service %s on host %s, %s, weight %d, changed at revision %d", s.Address, s.Name, short(s.Container), s.Service, s.Host, state, s.Weight, s.Revision)
			}
		}
		for _, l := range h.LeftOut {
			line("left out: %s", l)
		}
		for _, bl := range h.Blocks {
			if bl.Unreadable != "" {
				line("template %s: its output cannot be read: %s", bl.Template, bl.Unreadable)
				continue
			}
			if len(bl.Lines) == 0 {
				line("template %s (%s): its output does not name the host or its upstreams", bl.Template, bl.Dest)
			}
			for _, l := range bl.Lines {
				line("template %s serves it at %s:%d: %s", bl.Template, bl.Dest, l.N, l.Text)
			}
		}
	case r.Service != nil:
		s := r.Service
		line("service %s: %d instance(s)", s.Name, len(s.Instances))
		for _, in := range s.Instances {
			addr := in.Address
			if addr == "" {
				addr = "no address"
			}
			line("instance %s (%s) on host %s at %s: %s, health %s (%s, revision %d)", in.Name, short(in.Container), in.Host, addr, in.State, in.Health, in.Key, in.Revision)
			for _, re := range in.Reasons {
				line("  %s: %s", re.Code, re.Text)
			}
		}
	}
	for _, n := range r.Notes {
		line("note: %s", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// visible escapes the control characters of s (\x1b, \n, ...).
func visible(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// short is a container id as berth ps shows it.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
