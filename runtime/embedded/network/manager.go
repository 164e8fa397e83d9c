package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, as iproute2
// does it.
const NetnsDir = "/run/netns"

// DefaultBridge and DefaultSubnet are berth's defaults: clear of Docker's
// 172.17.0.0/16 (and its 172.16/12 and 192.168/16 pools) and of podman's
// 10.88.0.0/16.
const (
	DefaultBridge = "berth0"
	DefaultSubnet = "10.213.0.0/16"
)

// Manager owns one bridge and the container attachments on it.
type Manager struct {
	bridge string
	subnet netip.Prefix
	ipam   *ipam
	mu     sync.Mutex // serialises link changes
}

// Attachment is a container's place on the bridge.
type Attachment struct {
	Netns     string // path of the named netns to join
	IP        netip.Addr
	PrefixLen int
	Gateway   netip.Addr
	MAC       string
	HostVeth  string
}

// New makes sure the bridge exists, is up and holds the subnet's gateway
// address, keeping the allocator's state under stateDir.
func New(bridge string, subnet netip.Prefix, stateDir string) (*Manager, error) {
	if bridge == "" || len(bridge) > 12 {
		return nil, fmt.Errorf("network: bridge name %q must have 1 to 12 characters", bridge)
	}
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return nil, fmt.Errorf("network: subnet %s: need an IPv4 subnet of /30 or larger", subnet)
	}
	subnet = subnet.Masked()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := ensureNetnsDir(); err != nil {
		return nil, err
	}
	m := &Manager{bridge: bridge, subnet: subnet, ipam: &ipam{path: filepath.Join(stateDir, bridge+"-ipam.json"), subnet: subnet}}
	if err := m.ensureBridge(); err != nil {
		return nil, err
	}
	return m, nil
}

// Bridge is the bridge's name; Subnet its subnet.
func (m *Manager) Bridge() string       { return m.bridge }
func (m *Manager) Subnet() netip.Prefix { return m.subnet }

func (m *Manager) ensureBridge() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	link, err := netlink.LinkByName(m.bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("network: bridge %s: %w", m.bridge, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: m.bridge}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("network: create bridge %s: %w", m.bridge, err)
		}
		if link, err = netlink.LinkByName(m.bridge); err != nil {
			return fmt.Errorf("network: bridge %s: %w", m.bridge, err)
		}
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("network: %s exists and is a %s, not a bridge", m.bridge, link.Type())
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: gateway(m.subnet).AsSlice(), Mask: net.CIDRMask(m.subnet.Bits(), 32)}}
	if err := netlink.AddrAdd(link, gw); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("network: address %s on %s: %w", gw.IPNet, m.bridge, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("network: bridge %s up: %w", m.bridge, err)
	}
	return m.forwardRule(true)
}

// forwardRule adds (or deletes) an iptables rule accepting traffic
// between ports of the bridge. With br_netfilter loaded, switched traffic
// passes the FORWARD chain, whose policy docker sets to DROP. Hosts
// without iptables filter nothing and need no rule.
func (m *Manager) forwardRule(add bool) error {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		return nil
	}
	rule := []string{"FORWARD", "-i", m.bridge, "-o", m.bridge, "-m", "comment", "--comment", "berth bridge " + m.bridge, "-j", "ACCEPT"}
	present := exec.Command(ipt, append([]string{"-w", "-C"}, rule...)...).Run() == nil
	var args []string
	switch {
	case add && !present:
		args = append([]string{"-w", "-I", "FORWARD", "1"}, rule[1:]...)
	case !add && present:
		args = append([]string{"-w", "-D"}, rule...)
	default:
		return nil
	}
	if out, err := exec.Command(ipt, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("network: iptables %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// RemoveBridge deletes the bridge and its forwarding rule (used by tests
// and uninstall).
func (m *Manager) RemoveBridge() error {
	err := m.forwardRule(false)
	link, lerr := netlink.LinkByName(m.bridge)
	if lerr != nil {
		return err
	}
	return errors.Join(err, netlink.LinkDel(link))
}

func (m *Manager) netnsName(id string) string { return m.bridge + "-" + short(id) }
func hostVeth(id string) string               { return "vb" + short(id) }

func short(id string) string { return id[:min(12, len(id))] }

// NetnsPath is the named netns a container on this bridge joins.
func (m *Manager) NetnsPath(id string) string { return filepath.Join(NetnsDir, m.netnsName(id)) }

// Attach gives container id a netns with lo and eth0 (one end of a veth
// pair whose other end is on the bridge), an address and a default route.
// On error nothing is left behind.
func (m *Manager) Attach(id string) (_ Attachment, err error) {
	ip, err := m.ipam.Allocate(id)
	if err != nil {
		return Attachment{}, err
	}
	defer func() {
		if err != nil {
			_ = m.Detach(id)
		}
	}()
	ns, err := newNamedNetns(m.netnsName(id))
	if err != nil {
		return Attachment{}, fmt.Errorf("network: netns for %s: %w", short(id), err)
	}
	defer ns.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	br, err := netlink.LinkByName(m.bridge)
	if err != nil {
		return Attachment{}, fmt.Errorf("network: bridge %s: %w", m.bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostVeth(id), MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return Attachment{}, fmt.Errorf("network: veth %s: %w", veth.Name, err)
	}
	host, err := netlink.LinkByName(veth.Name)
	if err != nil {
		return Attachment{}, fmt.Errorf("network: veth %s: %w", veth.Name, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return Attachment{}, fmt.Errorf("network: veth %s up: %w", veth.Name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return Attachment{}, fmt.Errorf("network: netlink in netns: %w", err)
	}
	defer h.Close()
	att := Attachment{Netns: m.NetnsPath(id), IP: ip, PrefixLen: m.subnet.Bits(), Gateway: gateway(m.subnet), HostVeth: veth.Name}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return Attachment{}, fmt.Errorf("network: lo up: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return Attachment{}, fmt.Errorf("network: eth0: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(m.subnet.Bits(), 32)}}
	if err := h.AddrAdd(eth, addr); err != nil {
		return Attachment{}, fmt.Errorf("network: address %s: %w", addr.IPNet, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return Attachment{}, fmt.Errorf("network: eth0 up: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: att.Gateway.AsSlice()}); err != nil {
		return Attachment{}, fmt.Errorf("network: default route: %w", err)
	}
	att.MAC = eth.Attrs().HardwareAddr.String()
	return att, nil
}

// ensureNetnsDir makes NetnsDir a shared mount point of its own, as
// iproute2 does, so that namespaces bind-mounted there by berth and by
// `ip netns` live on the same mount and can always be unmounted.
func ensureNetnsDir() error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	// Two processes doing this at once would stack two bind mounts; an
	// flock makes the second see the first one's mount point.
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(NetnsDir), ".berth-netns.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("network: lock %s: %w", lock.Name(), err)
	}
	err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		if err = unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("network: make %s a shared mount: %w", NetnsDir, err)
	}
	return nil
}

// newNamedNetns creates a network namespace bind-mounted at
// NetnsDir/name. The unshare happens on a locked thread that is thrown
// away afterwards, so no goroutine ever runs in the wrong namespace.
func newNamedNetns(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.NewNamed(name)
		ch <- result{ns, err}
	}()
	r := <-ch
	return r.ns, r.err
}

// Detach removes container id's veth and netns and releases its address.
// It is idempotent and removes whatever is left of a partial Attach.
func (m *Manager) Detach(id string) error {
	var errs []error
	m.mu.Lock()
	if link, err := netlink.LinkByName(hostVeth(id)); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("network: delete veth %s: %w", hostVeth(id), err))
		}
	}
	m.mu.Unlock()
	if err := deleteNetns(m.NetnsPath(id)); err != nil {
		errs = append(errs, err)
	}
	if err := m.ipam.Release(id); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func deleteNetns(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// The file may carry more than one mount (copies from stacked
	// /run/netns binds): unmount until removal succeeds.
	var err error
	for range 4 {
		if uerr := unix.Unmount(path, unix.MNT_DETACH); uerr != nil && !errors.Is(uerr, unix.EINVAL) && !errors.Is(uerr, unix.ENOENT) {
			return fmt.Errorf("network: unmount %s: %w", path, uerr)
		}
		if err = os.Remove(path); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	return fmt.Errorf("network: remove %s: %w", path, err)
}

// Cleanup detaches everything on this bridge that belongs to no live
// container: addresses, netns and veths left by a crash.
func (m *Manager) Cleanup(live func(id string) bool) error {
	var errs []error
	owners, err := m.ipam.Owners()
	if err != nil {
		return err
	}
	for id := range owners {
		if !live(id) {
			errs = append(errs, m.Detach(id))
		}
	}
	liveShort := func(s string) bool {
		for id := range owners {
			if short(id) == s && live(id) {
				return true
			}
		}
		return false
	}
	ents, _ := os.ReadDir(NetnsDir)
	prefix := m.bridge + "-"
	for _, e := range ents {
		if s, ok := strings.CutPrefix(e.Name(), prefix); ok && len(s) == 12 && !liveShort(s) {
			errs = append(errs, deleteNetns(filepath.Join(NetnsDir, e.Name())))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	br, err := netlink.LinkByName(m.bridge)
	if err != nil {
		return errors.Join(errs...)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, l := range links {
		s, ok := strings.CutPrefix(l.Attrs().Name, "vb")
		if ok && l.Attrs().MasterIndex == br.Attrs().Index && l.Type() == "veth" && !liveShort(s) {
			errs = append(errs, netlink.LinkDel(l))
		}
	}
	return errors.Join(errs...)
}
