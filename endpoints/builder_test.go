package endpoints_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
)

// TestBuilderIsBuild: a Builder's set and errors equal Build's over random
// snapshots each a few changes from the last (instances added, removed,
// copies with one field changed, hostile values among them), at every
// step, with
// the options live templates give.
func TestBuilderIsBuild(t *testing.T) {
	corpus := recordstest.Corpus()
	rng := rand.New(rand.NewPCG(1, 15))
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	random := func(i int) records.Instance {
		env := map[string]string{"VIRTUAL_HOST": pick("a.localhost", "b.localhost", "a.localhost,B.localhost", "", "*.x.localhost", corpus[rng.IntN(len(corpus))].Value)}
		if rng.IntN(4) == 0 {
			env["VIRTUAL_PATH"] = pick("/api/", "/", corpus[rng.IntN(len(corpus))].Value)
		}
		if rng.IntN(4) == 0 {
			env["VIRTUAL_PROTO"] = pick("https", "grpc", "HTTP", "ftp")
		}
		return records.Instance{
			ID: pick(fmt.Sprint("c", i), "c1", "c2", "bad/id"), Name: pick("n", "m"),
			IP: pick("10.0.0.1", "10.0.0.2", "::1", "300.1.1.1", ""), Port: rng.IntN(3) * 80, Weight: rng.IntN(4) - 1,
			State: records.State(pick(string(records.StateRunning), string(records.StateDraining), "stopped")), Env: env,
		}
	}
	var b endpoints.Builder
	var ins []records.Instance
	var prev endpoints.Set
	for step := range 400 {
		for range 1 + rng.IntN(3) {
			switch n := len(ins); {
			case n > 0 && rng.IntN(3) == 0:
				i := rng.IntN(n)
				ins = slices.Delete(ins, i, i+1)
			case n > 0 && rng.IntN(2) == 0:
				// One field of one instance: the memo's key must tell them apart.
				i := rng.IntN(n)
				in, r := ins[i], random(step)
				in.Env = maps.Clone(in.Env)
				switch rng.IntN(9) {
				case 0:
					in.ID = r.ID
				case 1:
					in.Name = r.Name
				case 2:
					in.IP = r.IP
				case 3:
					in.Port = r.Port
				case 4:
					in.Weight = r.Weight
				case 5:
					in.State = r.State
				case 6:
					in.Env["VIRTUAL_HOST"] = r.Env["VIRTUAL_HOST"]
				case 7:
					in.Env["VIRTUAL_PATH"] = pick("/api/", "/", "")
				case 8:
					in.Env["VIRTUAL_PROTO"] = pick("https", "grpc", "")
				}
				ins[i] = in
			default:
				ins = slices.Insert(ins, rng.IntN(n+1), random(step))
			}
		}
		opts := []endpoints.Option{endpoints.AtRevision(storeRev(step)), endpoints.AtGeneration(uint64(step)), endpoints.WithConfigServers(prev)}
		want, wantErrs := endpoints.Build(ins, opts...)
		got, gotErrs := b.Build(ins, opts...)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: Builder.Build\n%+v\nBuild\n%+v", step, got, want)
		}
		if fmt.Sprint(gotErrs) != fmt.Sprint(wantErrs) {
			t.Fatalf("step %d: Builder.Build errors %q, Build's %q", step, gotErrs, wantErrs)
		}
		prev = want
	}
}
