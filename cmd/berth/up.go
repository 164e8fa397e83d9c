package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/network"
)

// newUpCommand is the daemon. For now it serves the embedded container
// runtime on its unix socket; the store, registrar and templates join it
// later.
func newUpCommand() *cobra.Command {
	var stateDir, socket, subnet, bridge, cgroupParent string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the berth daemon: the embedded container runtime and its API socket",
		Long: `berth up runs the daemon. It starts the embedded container runtime
(re-attaching to containers left running by a previous daemon and removing
orphans) and serves its API on a unix socket that the container commands
(berth run, ps, logs, ...) talk to. Containers keep running when the daemon
stops.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			prefix, err := netip.ParsePrefix(subnet)
			if err != nil {
				return usagef("--subnet %q: %v", subnet, err)
			}
			ctx := cmd.Context()
			rt, err := embedded.New(ctx, embedded.WithStateDir(stateDir), embedded.WithBridge(bridge, prefix),
				embedded.WithCgroupParent(cgroupParent), embedded.WithLogger(log))
			if err != nil {
				return err
			}
			defer rt.Close()
			ln, err := api.Listen(socket)
			if err != nil {
				return err
			}
			log.Info("berth daemon listening", "socket", socket, "state_dir", stateDir, "bridge", bridge, "subnet", prefix)
			if err := api.NewServer(rt, api.WithServerLogger(log)).Serve(ctx, ln); err != nil {
				return fmt.Errorf("serve %s: %w", socket, err)
			}
			log.Info("berth daemon stopping; containers keep running")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", "/var/lib/berth", "directory for images, containers and network state")
	f.StringVar(&socket, "socket", api.DefaultSocket, "unix socket to serve the API on")
	f.StringVar(&subnet, "subnet", network.DefaultSubnet, "subnet of the container bridge")
	f.StringVar(&bridge, "bridge", network.DefaultBridge, "name of the container bridge")
	f.StringVar(&cgroupParent, "cgroup-parent", "berth", "cgroup under which container cgroups are created")
	return cmd
}
