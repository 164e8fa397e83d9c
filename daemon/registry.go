package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/registrar/consulcatalog"
)

// withRegistry adds the catalog sinks of reg to the registrar's
// configuration (a registry without "kv" keeps the containers' records
// out of the store) and registers their metrics. It returns the sink's
// Run (nil: none).
func (d *Daemon) withRegistry(reg config.Registry, rc *registrar.Config, log *slog.Logger) (func(context.Context) error, error) {
	if !reg.Has(config.RegistryConsulCatalog) {
		return nil, nil
	}
	host, err := rc.HostName()
	if err != nil {
		return nil, err
	}
	cc := api.DefaultConfig() // CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...
	if reg.Address != "" {
		cc.Address = reg.Address
	}
	tok, err := reg.ReadToken()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		cc.Token = tok
	}
	client, err := api.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("[registry] consul agent %s: %w", cc.Address, err)
	}
	opts := []consulcatalog.Option{consulcatalog.WithLogger(log)}
	if reg.CheckTTL > 0 {
		opts = append(opts, consulcatalog.WithCheckTTL(reg.CheckTTL))
	}
	if reg.DeregisterAfter > 0 {
		opts = append(opts, consulcatalog.WithDeregisterAfter(reg.DeregisterAfter))
	}
	sink, err := consulcatalog.New(client, host, opts...)
	if err != nil {
		return nil, fmt.Errorf("[registry] %w", err)
	}
	rc.Sinks = append(rc.Sinks, sink)
	d.catReg = &catalogRegistry{sink: sink, agent: cc.Address}
	rc.NoRecords = !reg.Has(config.RegistryKV)
	d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "berth", Name: "catalog_services",
		Help: "Services of this host's containers registered in the Consul catalog.",
	}, func() float64 { return float64(sink.Stats().Services) }))
	d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "berth", Name: "catalog_refused_containers",
		Help: "Containers with a service the Consul agent refused (ACL permission, rejected definition); each is logged.",
	}, func() float64 { return float64(sink.Stats().Refused) }))
	d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "berth", Name: "catalog_sync_failing",
		Help: "1 while the Consul agent cannot be reached (retrying with a backoff; services are left as they are).",
	}, func() float64 {
		if sink.Stats().Failing {
			return 1
		}
		return 0
	}))
	log.Info("registering containers in the consul catalog", "agent", cc.Address, "records_in_store", !rc.NoRecords)
	return sink.Run, nil
}
