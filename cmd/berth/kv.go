package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/store"
)

// kvOptions are the flags of every kv subcommand.
type kvOptions struct {
	store  *storeFlags
	output string
}

func newKVCommand() *cobra.Command {
	o := &kvOptions{}
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Read and write the key/value store (etcdctl-like)",
		Long: `Read and write berth's key/value store: the running daemon's, or an
embedded store that exists on disk (kv then serves it for the duration of
the command).

` + storeCommandHelp,
	}
	o.store = addStoreCommandFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVarP(&o.output, "output", "o", "simple", "output format: simple or json")
	cmd.AddCommand(newKVGetCommand(o), newKVPutCommand(o), newKVListCommand(o), newKVRemoveCommand(o), newKVWatchCommand(o))
	return cmd
}

// kvJSON is the JSON shape of one key in kv output.
type kvJSON struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	ModRevision int64  `json:"mod_revision,omitempty"`
}

func toKVJSON(kv store.KV) kvJSON {
	return kvJSON{Key: kv.Key, Value: string(kv.Value), ModRevision: int64(kv.ModRevision)}
}

// withStore validates the output flag, opens the store, runs fn, and closes
// the store (detaching it instead when detach is set).
func (o *kvOptions) withStore(cmd *cobra.Command, detach bool, fn func(ctx context.Context, st store.Store) error) error {
	if o.output != "simple" && o.output != "json" {
		return usagef("--output %q: want simple or json", o.output)
	}
	log, err := commandLogger(cmd)
	if err != nil {
		return err
	}
	st, err := o.store.open(cmd.Context(), log)
	if err != nil {
		return err
	}
	runErr := fn(cmd.Context(), st)
	var closeErr error
	if d, ok := st.(store.Detacher); ok && detach {
		closeErr = d.Detach()
	} else {
		closeErr = st.Close()
	}
	return errors.Join(runErr, closeErr)
}

func (o *kvOptions) printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func newKVGetCommand(o *kvOptions) *cobra.Command {
	var prefix bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value (with --prefix: every key under KEY and its value)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withStore(cmd, false, func(ctx context.Context, st store.Store) error {
				w := cmd.OutOrStdout()
				if !prefix {
					kv, err := st.Get(ctx, args[0])
					if err != nil {
						return err
					}
					if o.output == "json" {
						return o.printJSON(w, toKVJSON(kv))
					}
					_, err = fmt.Fprintf(w, "%s\n", kv.Value)
					return err
				}
				kvs, _, err := st.List(ctx, args[0])
				if err != nil {
					return err
				}
				if len(kvs) == 0 {
					return fmt.Errorf("no key under %q: %w", args[0], store.ErrNotFound)
				}
				if o.output == "json" {
					out := make([]kvJSON, len(kvs))
					for i, kv := range kvs {
						out[i] = toKVJSON(kv)
					}
					return o.printJSON(w, out)
				}
				for _, kv := range kvs {
					if _, err := fmt.Fprintf(w, "%s\n%s\n", kv.Key, kv.Value); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "get every key under KEY")
	return cmd
}

func newKVPutCommand(o *kvOptions) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a key (VALUE - reads standard input)",
		Long: `Write a key. VALUE "-" reads the value from standard input. With --ttl the
key expires TTL after this command exits (berth's own daemon renews the
TTL keys it owns; a key put here is not renewed).`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			value := []byte(args[1])
			if args[1] == "-" {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return fmt.Errorf("read value from standard input: %w", err)
				}
				value = b
			}
			if ttl < 0 {
				return usagef("--ttl %s: must not be negative", ttl)
			}
			var opts []store.PutOption
			if ttl > 0 {
				opts = append(opts, store.WithTTL(ttl))
			}
			return o.withStore(cmd, ttl > 0, func(ctx context.Context, st store.Store) error {
				rev, err := st.Put(ctx, args[0], value, opts...)
				if err != nil {
					return err
				}
				if o.output == "json" {
					return o.printJSON(cmd.OutOrStdout(), map[string]int64{"revision": int64(rev)})
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), "OK")
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire the key this long after the command exits (e.g. 30s)")
	return cmd
}

func newKVListCommand(o *kvOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls [PREFIX]",
		Aliases: []string{"list"},
		Short:   "List the keys under PREFIX (default: all)",
		Args:    usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return o.withStore(cmd, false, func(ctx context.Context, st store.Store) error {
				kvs, rev, err := st.List(ctx, prefix)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if o.output == "json" {
					out := struct {
						Revision int64    `json:"revision"`
						Keys     []kvJSON `json:"keys"`
					}{Revision: int64(rev), Keys: make([]kvJSON, len(kvs))}
					for i, kv := range kvs {
						out.Keys[i] = toKVJSON(kv)
					}
					return o.printJSON(w, out)
				}
				for _, kv := range kvs {
					if _, err := fmt.Fprintln(w, kv.Key); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	return cmd
}

func newKVRemoveCommand(o *kvOptions) *cobra.Command {
	var prefix bool
	cmd := &cobra.Command{
		Use:     "rm KEY",
		Aliases: []string{"del", "delete"},
		Short:   "Delete a key (with --prefix: every key under KEY)",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			return o.withStore(cmd, false, func(ctx context.Context, st store.Store) error {
				// Delete is idempotent in the store contract; the command
				// says so when there was nothing to delete.
				var n int
				if prefix {
					kvs, _, err := st.List(ctx, key)
					if err != nil {
						return err
					}
					n = len(kvs)
				} else if _, err := st.Get(ctx, key); err == nil {
					n = 1
				} else if !errors.Is(err, store.ErrNotFound) {
					return err
				}
				if n == 0 {
					return fmt.Errorf("%q: %w", key, store.ErrNotFound)
				}
				var opts []store.DeleteOption
				if prefix {
					opts = append(opts, store.WithPrefix())
				}
				rev, err := st.Delete(ctx, key, opts...)
				if err != nil {
					return err
				}
				if o.output == "json" {
					return o.printJSON(cmd.OutOrStdout(), map[string]int64{"revision": int64(rev), "deleted": int64(n)})
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), n)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "delete every key under KEY")
	return cmd
}

func newKVWatchCommand(o *kvOptions) *cobra.Command {
	var rev int64
	cmd := &cobra.Command{
		Use:   "watch PREFIX",
		Short: "Print one line per change under PREFIX until interrupted",
		Long: `Print one line per change under PREFIX until interrupted:
"PUT key value" or "DELETE key" (or one JSON object per line with -o json).
--rev N starts after revision N, replaying what happened since.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withStore(cmd, false, func(ctx context.Context, st store.Store) error {
				w := cmd.OutOrStdout()
				for resp := range st.Watch(ctx, args[0], store.Revision(rev)) {
					if resp.Err != nil {
						return resp.Err
					}
					for _, ev := range resp.Events {
						var err error
						switch {
						case o.output == "json":
							err = o.printJSON(w, struct {
								Type string `json:"type"`
								kvJSON
							}{ev.Type.String(), toKVJSON(ev.KV)})
						case ev.Type == store.EventDelete:
							_, err = fmt.Fprintf(w, "DELETE %s\n", ev.KV.Key)
						default:
							_, err = fmt.Fprintf(w, "PUT %s %s\n", ev.KV.Key, strconv.Quote(string(ev.KV.Value)))
						}
						if err != nil {
							return err
						}
					}
				}
				return nil // interrupted
			})
		},
	}
	cmd.Flags().Int64Var(&rev, "rev", 0, "start after this revision (0: from now)")
	return cmd
}
