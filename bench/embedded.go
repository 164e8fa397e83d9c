package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
)

// startEmbedded starts an embedded runtime with its state under dir, a
// bridge (bridge+suffix, on a random 10.octet.x.0/24) and a cgroup parent
// of its own. stop removes its containers, closes it and removes the
// bridge; suffix names what the benchmark creates.
func startEmbedded(ctx context.Context, dir, bridge string, octet byte, log *slog.Logger, extra ...embedded.Option) (rt *embedded.Runtime, suffix string, stop func(), err error) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	suffix = hex.EncodeToString(b)
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, octet, b[0], 0}), 24)
	opts := []embedded.Option{embedded.WithStateDir(filepath.Join(dir, "state")),
		embedded.WithBridge(bridge+suffix, subnet), embedded.WithCgroupParent("berth-bench-" + suffix), embedded.WithLogger(log)}
	rt, err = embedded.New(ctx, append(opts, extra...)...)
	if err != nil {
		return nil, "", nil, err
	}
	return rt, suffix, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		cs, _ := rt.List(cctx)
		for _, c := range cs {
			_ = rt.Remove(cctx, c.ID, runtime.Force())
		}
		_ = rt.Close()
		_ = rt.Network().RemoveBridge()
	}, nil
}
