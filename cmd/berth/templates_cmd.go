package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/templates"
)

// newTemplatesCommand is `berth templates ls|show|save`: the templates
// berth ships, compiled into the binary, usable without the source tree.
func newTemplatesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "templates",
		Short: "List, print or save the templates shipped in the binary (nginx.tmpl, nginx.conf.tmpl)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List the shipped templates (SRC: how berth.toml's src or --template names one)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			names, err := shippedTemplates()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSRC\tDESCRIPTION")
			for _, n := range names {
				b, _ := fs.ReadFile(templates.Files(), n)
				fmt.Fprintf(tw, "%s\t%s\t%s\n", n, templates.Prefix+strings.TrimSuffix(n, ".tmpl"), templateSummary(b))
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show NAME",
		Short: "Print a shipped template (e.g. berth templates show nginx.tmpl > nginx.tmpl)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := shippedTemplate(args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	var dir string
	var force bool
	save := &cobra.Command{
		Use:   "save [NAME...] --dir DIR",
		Short: "Write shipped templates (default: all of them) into DIR",
		Args:  usageArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("templates save: --dir is required")
			}
			if len(args) == 0 {
				var err error
				if args, err = shippedTemplates(); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for _, n := range args {
				b, err := shippedTemplate(n)
				if err != nil {
					return err
				}
				dst := filepath.Join(dir, filepath.Base(n))
				flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
				if force {
					flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
				}
				f, err := os.OpenFile(dst, flags, 0o644)
				if err != nil {
					if os.IsExist(err) {
						return fmt.Errorf("templates save: %s exists (--force overwrites it)", dst)
					}
					return fmt.Errorf("templates save: %w", err)
				}
				if _, err := f.Write(b); err != nil {
					f.Close()
					return fmt.Errorf("templates save: %w", err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("templates save: %w", err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), dst)
			}
			return nil
		},
	}
	save.Flags().StringVar(&dir, "dir", "", "directory to write the templates into")
	save.Flags().BoolVar(&force, "force", false, "overwrite files that exist")
	cmd.AddCommand(save)
	return cmd
}

// shippedTemplates lists the names of the shipped templates, sorted.
func shippedTemplates() ([]string, error) {
	return fs.Glob(templates.Files(), "*.tmpl")
}

// shippedTemplate returns one shipped template, naming the others when
// name is not one of them. "nginx" finds nginx.tmpl.
func shippedTemplate(name string) ([]byte, error) {
	if _, b, _, err := templates.Builtin(templates.Prefix + strings.TrimPrefix(name, templates.Prefix)); err == nil {
		return b, nil
	}
	names, _ := shippedTemplates()
	return nil, usagef("no shipped template %q (berth ships: %s)", name, strings.Join(names, ", "))
}

// templateSummary is the first sentence of a template's leading {{/* */}}
// comment.
func templateSummary(b []byte) string {
	var words []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(line, "{{-"), "{{"))
		line = strings.TrimSpace(strings.TrimPrefix(line, "/*"))
		if line == "" {
			if len(words) > 0 {
				break // the end of the first paragraph
			}
			continue
		}
		words = append(words, line)
		if strings.HasSuffix(line, ".") || strings.Contains(line, "*/") {
			break
		}
	}
	s := strings.Join(words, " ")
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSuffix(strings.TrimSpace(strings.TrimSuffix(s, "*/}}")), ".")
}
