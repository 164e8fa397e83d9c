package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthd/berth/cluster"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
	"github.com/berthd/berth/store/etcd"
)

// clusterOptions are the flags of every cluster subcommand: the store
// flags and -o, as for kv.
type clusterOptions struct{ kvOptions }

func newClusterCommand() *cobra.Command {
	o := &clusterOptions{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and change the membership of the cluster of berth hosts",
		Long: `The daemons of several hosts form one etcd cluster of their embedded
stores: berth up --cluster-init on the first host, berth up --join
https://FIRST:2380 --token TOKEN on the others. These commands use the
local daemon's store.

` + storeCommandHelp,
	}
	o.store = addStoreCommandFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVarP(&o.output, "output", "o", "simple", "output format: simple or json")
	cmd.AddCommand(
		&cobra.Command{
			Use: "ls", Short: "List the members", Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				return o.withClient(cmd, func(ctx context.Context, cli *clientv3.Client) error {
					ms, err := cluster.List(ctx, cli)
					if err != nil {
						return err
					}
					if o.output == "json" {
						return json.NewEncoder(cmd.OutOrStdout()).Encode(ms)
					}
					tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tPEER URL\tSTATUS\tID")
					for _, m := range ms {
						status := "started"
						switch {
						case !m.Started:
							status = "added, not started"
						case m.Leader:
							status = "leader"
						}
						if m.Self {
							status += " (this host)"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%x\n", m.Name, m.PeerURL, status, m.ID)
					}
					return tw.Flush()
				})
			},
		},
		&cobra.Command{
			Use: "add PEER_URL", Short: "Add a member ahead of its start (https://IP:2381); the host then joins with berth up --join",
			Args: usageArgs(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.withClient(cmd, func(ctx context.Context, cli *clientv3.Client) error {
					m, err := cluster.Add(ctx, cli, args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "added member %x at %s\n", m.ID, m.PeerURL)
					return nil
				})
			},
		},
		&cobra.Command{
			Use: "remove NAME", Short: "Remove a member (its daemon stops serving; it can join again)",
			Args: usageArgs(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.withClient(cmd, func(ctx context.Context, cli *clientv3.Client) error {
					m, err := cluster.Remove(ctx, cli, args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "removed member %s (%x)\n", args[0], m.ID)
					return nil
				})
			},
		},
		&cobra.Command{
			Use: "token", Short: "Print the join token (a secret: whoever has it can join and read and write every record)",
			Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				log, err := commandLogger(cmd)
				if err != nil {
					return err
				}
				raw, err := o.store.resolve(cmd.Context(), log)
				if err != nil {
					return err
				}
				dir, err := embeddedStoreDir(raw, o.store)
				if err != nil {
					return err
				}
				tok, err := cluster.TokenOf(dir)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), tok.String())
				return nil
			},
		},
	)
	return cmd
}

// embeddedStoreDir is the directory of the embedded store rawURL names.
func embeddedStoreDir(rawURL string, f *storeFlags) (string, error) {
	if rawURL == "" {
		sd := f.stateDir
		if sd == "" {
			sd = backend.DefaultStateDir()
		}
		return filepath.Join(sd, "store"), nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "embedded" {
		return "", usagef("the cluster commands use an embedded store; the store is %s", rawURL)
	}
	return u.Path, nil
}

// withClient opens the store, which must be an etcd store, and runs fn
// with its client.
func (o *clusterOptions) withClient(cmd *cobra.Command, fn func(ctx context.Context, cli *clientv3.Client) error) error {
	return o.withStore(cmd, false, func(ctx context.Context, st store.Store) error {
		es, ok := st.(*etcd.Store)
		if !ok {
			return usagef("the cluster commands use an etcd store")
		}
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return fn(ctx, es.Client())
	})
}
