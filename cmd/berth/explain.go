package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/explain"
	"github.com/berthd/berth/records"
)

// explainOptions are the flags of berth explain.
type explainOptions struct {
	sources *templateFlags
	store   *storeFlags
	output  string
	as      string
}

func newExplainCommand() *cobra.Command {
	o := &explainOptions{}
	cmd := &cobra.Command{
		Use:   "explain CONTAINER|HOST|SERVICE",
		Short: "Say, in plain words, whether and how a container, host name or service is routed",
		Long: `Explain the whole path of one thing, one fact per line:

  a container (id, id prefix or name): the records it produced, with their
    store keys and revisions, or why it produced none (stopped, not
    running, unhealthy, filtered out); what keeps a record out of a proxy
    (draining, no port, no address, an invalid VIRTUAL_HOST, a quarantine);
    every template that reads it, and whether its current output routes it;
  a host name (VIRTUAL_HOST): its upstreams, their instances and the store
    revision each last changed at, and the lines of each output serving it;
  a service: its instances and their states.

A query is tried as a container, then a service, then a host name; --as
picks one. The templates are the running daemon's (asked over its socket,
-H), or those --config names; the runtime is the daemon's. -o json prints the report for scripts.

` + storeCommandHelp,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	f := cmd.Flags()
	o.sources = addTemplateFlags(f)
	o.sources.allowNone = true
	o.store = addStoreCommandFlags(f)
	f.StringVarP(&o.output, "output", "o", "text", "text or json")
	f.StringVar(&o.as, "as", "", "what the argument names: container, host or service (default: whichever matches first)")
	return cmd
}

func (o *explainOptions) run(cmd *cobra.Command, query string) error {
	log, err := commandLogger(cmd)
	if err != nil {
		return err
	}
	if o.output != "text" && o.output != "json" {
		return usagef("-o %q: want text or json", o.output)
	}
	kind := explain.Kind(o.as)
	switch kind {
	case explain.KindAuto, explain.KindContainer, explain.KindHost, explain.KindService:
	default:
		return usagef("--as %q: want container, host or service", o.as)
	}
	confs, files, err := o.sources.load()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	socket := daemonSocket(o.store)
	client := api.NewClient(socket)
	var opts []explain.Option
	prefix := o.sources.prefix
	if _, serr := os.Stat(socket); serr == nil {
		opts = append(opts, explain.WithRuntime(client))
		if prefix == "" {
			ictx, cancel := context.WithTimeout(ctx, daemonInfoTimeout)
			if info, err := client.Info(ictx); err == nil {
				prefix = info.Prefix
			}
			cancel()
		}
		cctx, cancel := context.WithTimeout(ctx, daemonInfoTimeout)
		if refused, err := client.CatalogRefused(cctx); err == nil {
			opts = append(opts, explain.WithCatalogRefused(refused))
		} else {
			log.Debug("the daemon's Consul catalog refusals are unknown", "socket", socket, "err", err)
		}
		cancel()
		if len(confs) == 0 {
			tctx, cancel := context.WithTimeout(ctx, daemonInfoTimeout)
			ts, err := client.Templates(tctx)
			cancel()
			if err != nil {
				log.Warn("the daemon's templates are unknown: outputs are not checked (name them with --config)", "socket", socket, "err", err)
			} else {
				opts = append(opts, explain.WithTemplates(ts))
			}
		}
	}
	if len(confs) > 0 {
		opts = append(opts, explain.WithTemplates(explain.States(confs, nil)))
	}
	opts = append(opts, explain.WithPrefix(cmp.Or(prefix, records.DefaultPrefix)))
	o.store.useConfig(files)
	st, err := o.store.open(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := explain.New(st, opts...).Explain(ctx, query, kind)
	if err != nil {
		if errors.Is(err, explain.ErrNotFound) {
			return exitCodeError{exitFailure, err}
		}
		return err
	}
	if o.output == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(cmd.OutOrStdout())
}
