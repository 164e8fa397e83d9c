package network_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/berthd/berth/runtime/embedded/embeddedtest"
	"github.com/berthd/berth/runtime/embedded/network"
	"github.com/berthd/berth/runtime/embedded/owner"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func rulePresent(bridge, comment string) bool {
	return exec.Command("iptables", "-w", "-C", "FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", comment, "-j", "ACCEPT").Run() == nil
}

// TestExistingBridge: how New treats a bridge that is already there. An
// older berth's unmarked bridge of this state dir is marked and its rule
// replaced; an unmarked bridge in use, and a bridge of a daemon whose
// state dir is gone but with interfaces attached, are refused; empty
// leftovers are adopted.
func TestExistingBridge(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (bridges, iptables)")
	}
	_, hasIptables := exec.LookPath("iptables")
	for _, tc := range []struct {
		name      string
		alias     string // "gone": marked by a removed state dir
		usedHere  bool   // this state dir's allocator state knows the bridge
		port      bool   // an interface is attached
		legacyFwd bool   // an older berth's FORWARD rule
		refused   string
	}{
		{name: "older berth's, this state dir's", usedHere: true, port: true, legacyFwd: true},
		{name: "unmarked, in use", port: true, refused: "exists without berth's ownership mark and is in use (interfaces bp"},
		{name: "unmarked, unused"},
		{name: "left over by a removed state dir", alias: "gone"},
		{name: "left over by a removed state dir, in use", alias: "gone", port: true, refused: "whose state dir /nonexistent/berth-gone is gone and still has bp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := embeddedtest.NewEnv(t)
			own, err := owner.Claim(env.StateDir)
			if err != nil {
				t.Fatal(err)
			}
			defer own.Release()
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: env.Bridge}}
			if err := netlink.LinkAdd(br); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = network.RemoveBridge(env.Bridge, own.Mark)
				_ = netlink.LinkDel(br)
			})
			gw := env.Subnet.Addr().Next()
			if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(env.Subnet.Bits(), 32)}}); err != nil {
				t.Fatal(err)
			}
			if tc.alias == "gone" {
				if err := netlink.LinkSetAlias(br, "berth 0badc0de /nonexistent/berth-gone"); err != nil {
					t.Fatal(err)
				}
			}
			port := "bp" + randHex(8)
			if tc.port {
				v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: mustIndex(t, env.Bridge)}, PeerName: "bq" + port[2:]}
				if err := netlink.LinkAdd(v); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = netlink.LinkDel(v) })
			}
			legacy := "berth bridge " + env.Bridge
			if tc.legacyFwd && hasIptables == nil {
				if out, err := exec.Command("iptables", "-w", "-I", "FORWARD", "1", "-i", env.Bridge, "-o", env.Bridge, "-m", "comment", "--comment", legacy, "-j", "ACCEPT").CombinedOutput(); err != nil {
					t.Fatalf("iptables: %v %s", err, out)
				}
				t.Cleanup(func() {
					_ = exec.Command("iptables", "-w", "-D", "FORWARD", "-i", env.Bridge, "-o", env.Bridge, "-m", "comment", "--comment", legacy, "-j", "ACCEPT").Run()
				})
			}
			netDir := filepath.Join(env.StateDir, "network")
			if tc.usedHere {
				if err := os.MkdirAll(netDir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(netDir, env.Bridge+"-ipam.json"), []byte(`{"subnet":"`+env.Subnet.String()+`","allocs":{}}`), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			m, err := network.New(network.Config{Bridge: env.Bridge, Subnet: env.Subnet, StateDir: netDir, Owner: own, Log: slog.New(slog.DiscardHandler)})
			link, lerr := netlink.LinkByName(env.Bridge)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tc.refused != "" {
				if err == nil || !errors.Is(err, owner.ErrInUse) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err = %v\nwant owner.ErrInUse containing %q", err, tc.refused)
				}
				if m, _, _ := owner.ParseTag(link.Attrs().Alias); m == own.Mark {
					t.Errorf("the refused bridge was marked: %q", link.Attrs().Alias)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "berth " + own.Mark + " " + own.StateDir; link.Attrs().Alias != want {
				t.Errorf("ifalias %q, want %q", link.Attrs().Alias, want)
			}
			if hasIptables == nil {
				if rulePresent(env.Bridge, legacy) {
					t.Errorf("the older berth's rule %q is still there", legacy)
				}
				if !rulePresent(env.Bridge, "berth "+own.Mark+" bridge "+env.Bridge) {
					t.Error("no marked FORWARD rule")
				}
			}
			if err := m.RemoveBridge(); err != nil {
				t.Fatal(err)
			}
			if _, err := netlink.LinkByName(env.Bridge); err == nil {
				t.Error("RemoveBridge left the bridge")
			}
		})
	}
}

func mustIndex(t *testing.T, name string) int {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// TestRemoveBridgeOfAnother: RemoveBridge leaves a bridge without this
// owner's mark alone.
func TestRemoveBridgeOfAnother(t *testing.T) {
	name := "bo" + randHex(8)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	if err := netlink.LinkSetAlias(br, "berth 0badc0de /elsewhere"); err != nil {
		t.Fatal(err)
	}
	if err := network.RemoveBridge(name, "12345678"); err == nil || !strings.Contains(err.Error(), "left alone") {
		t.Errorf("err = %v, want it left alone", err)
	}
	if _, err := netlink.LinkByName(name); err != nil {
		t.Errorf("the other owner's bridge is gone: %v", err)
	}
}
