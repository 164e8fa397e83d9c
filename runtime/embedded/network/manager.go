package network

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/berthd/berth/runtime/embedded/owner"
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
	owner  *owner.Owner
	log    *slog.Logger
	mu     sync.Mutex // serialises link changes
}

// Config configures New.
type Config struct {
	Bridge   string
	Subnet   netip.Prefix
	StateDir string       // where the allocator's state lives
	Owner    *owner.Owner // whose mark every resource carries
	Log      *slog.Logger // default slog.Default()
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

// New makes sure the bridge exists, is this daemon's, is up and holds the
// subnet's gateway address, keeping the allocator's state under
// c.StateDir. It refuses, with owner.ErrInUse, a bridge another berth
// daemon owns and a subnet that overlaps an address of any other
// interface; see the package doc.
func New(c Config) (*Manager, error) {
	bridge, subnet := c.Bridge, c.Subnet
	if bridge == "" || len(bridge) > 12 {
		return nil, fmt.Errorf("network: bridge name %q must have 1 to 12 characters", bridge)
	}
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return nil, fmt.Errorf("network: subnet %s: need an IPv4 subnet of /30 or larger", subnet)
	}
	if c.Owner == nil || !owner.IsMark(c.Owner.Mark) {
		return nil, errors.New("network: no owner")
	}
	subnet = subnet.Masked()
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := ensureNetnsDir(); err != nil {
		return nil, err
	}
	m := &Manager{
		bridge: bridge, subnet: subnet, owner: c.Owner, log: cmp.Or(c.Log, slog.Default()),
		ipam: &ipam{path: filepath.Join(c.StateDir, bridge+"-ipam.json"), subnet: subnet},
	}
	if err := m.ensureBridge(); err != nil {
		return nil, err
	}
	return m, nil
}

// Bridge is the bridge's name; Subnet its subnet.
func (m *Manager) Bridge() string       { return m.bridge }
func (m *Manager) Subnet() netip.Prefix { return m.subnet }

// bridgeTag is the bridge's ifalias: the owner's mark and state dir
// (which another daemon names in its refusal), within IFALIASZ.
func (m *Manager) bridgeTag() string {
	t := m.owner.Tag(m.owner.StateDir)
	if len(t) > 255 {
		t = m.owner.Tag("")
	}
	return t
}

func (m *Manager) ensureBridge() error {
	unlock, err := hostLock(".berth-network.lock")
	if err != nil {
		return err
	}
	defer unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	link, err := netlink.LinkByName(m.bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("network: bridge %s: %w", m.bridge, err)
		}
		link = nil
	}
	if link != nil {
		if _, ok := link.(*netlink.Bridge); !ok {
			return fmt.Errorf("network: %s exists and is a %s, not a bridge", m.bridge, link.Type())
		}
		if err := m.claimBridge(link); err != nil {
			return err
		}
	}
	if err := m.checkOverlap(); err != nil {
		return err
	}
	if link == nil {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: m.bridge}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("network: create bridge %s: %w", m.bridge, err)
		}
		if link, err = netlink.LinkByName(m.bridge); err != nil {
			return fmt.Errorf("network: bridge %s: %w", m.bridge, err)
		}
		m.log.Info("created bridge", "bridge", m.bridge, "subnet", m.subnet, "mark", m.owner.Mark)
	}
	if link.Attrs().Alias != m.bridgeTag() {
		if err := netlink.LinkSetAlias(link, m.bridgeTag()); err != nil {
			return fmt.Errorf("network: mark bridge %s: %w", m.bridge, err)
		}
	}
	// A bridge whose address the kernel chose takes its lowest port's: a
	// container started or removed would change the gateway's MAC under
	// the others, whose stale ARP entries then stall their replies to the
	// host (a proxy) for seconds. Set, it stays.
	if err := netlink.LinkSetHardwareAddr(link, link.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("network: fix the address of bridge %s: %w", m.bridge, err)
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

// claimBridge decides whether an existing bridge may be this daemon's:
// one carrying its mark is; one carrying another daemon's mark is
// refused while that daemon's state dir exists, and adopted when it is
// gone and nothing is attached; one without a mark is adopted when this
// state dir used it before (an older berth, which did not mark bridges)
// or when it is unused.
func (m *Manager) claimBridge(link netlink.Link) error {
	mark, dir, tagged := owner.ParseTag(link.Attrs().Alias)
	if tagged && mark == m.owner.Mark {
		return nil
	}
	ports, addrs := m.bridgeUse(link)
	if tagged {
		desc, alive := "the berth daemon with mark "+mark+" (state dir unknown)", true
		if dir != "" {
			desc, alive = owner.Describe(dir, mark)
		}
		if alive {
			return owner.InUsef("network: bridge %s belongs to %s: give this daemon a bridge and subnet of its own", m.bridge, desc)
		}
		if len(ports) > 0 {
			return owner.InUsef("network: bridge %s belongs to %s and still has %s attached: give this daemon another bridge, or remove that one",
				m.bridge, desc, strings.Join(ports, ", "))
		}
		m.log.Info("adopting a bridge left over by another daemon", "bridge", m.bridge, "previous_owner", desc)
		return nil
	}
	if _, err := os.Stat(m.ipam.path); err == nil {
		m.log.Info("marking this state dir's bridge (made by an older berth)", "bridge", m.bridge, "mark", m.owner.Mark)
		return nil
	}
	gw := netip.PrefixFrom(gateway(m.subnet), m.subnet.Bits())
	if len(ports) == 0 && (len(addrs) == 0 || len(addrs) == 1 && addrs[0] == gw) {
		return nil
	}
	var use []string
	if len(ports) > 0 {
		use = append(use, "interfaces "+strings.Join(ports, ", "))
	}
	for _, a := range addrs {
		use = append(use, "address "+a.String())
	}
	return owner.InUsef("network: bridge %s exists without berth's ownership mark and is in use (%s): it belongs to another program or to an older berth with another state dir; give this daemon another bridge",
		m.bridge, strings.Join(use, ", "))
}

// bridgeUse lists the interfaces attached to a bridge and its IPv4
// addresses.
func (m *Manager) bridgeUse(br netlink.Link) (ports []string, addrs []netip.Prefix) {
	links, _ := netlink.LinkList()
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			ports = append(ports, l.Attrs().Name)
		}
	}
	as, _ := netlink.AddrList(br, netlink.FAMILY_V4)
	for _, a := range as {
		addrs = append(addrs, ipnetPrefix(a.IPNet))
	}
	return ports, addrs
}

func ipnetPrefix(n *net.IPNet) netip.Prefix {
	ip, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones)
}

// checkOverlap refuses a subnet that overlaps an address of any interface
// but this daemon's bridge: routes to it would be ambiguous, and another
// daemon's bridge on the same subnet would share its gateway address.
func (m *Manager) checkOverlap() error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("network: list addresses: %w", err)
	}
	for _, a := range addrs {
		p := ipnetPrefix(a.IPNet)
		if !p.Overlaps(m.subnet) {
			continue
		}
		l, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			continue // gone meanwhile
		}
		if l.Attrs().Name == m.bridge {
			continue
		}
		who := ""
		if mark, dir, ok := owner.ParseTag(l.Attrs().Alias); ok {
			desc := "the berth daemon with mark " + mark
			if dir != "" {
				desc, _ = owner.Describe(dir, mark)
			}
			who = ", the bridge of " + desc
		}
		return owner.InUsef("network: subnet %s overlaps address %s of interface %s%s: choose a subnet clear of every interface's addresses",
			m.subnet, p, l.Attrs().Name, who)
	}
	return nil
}

// forwardRule adds (or deletes) an iptables rule accepting traffic
// between ports of the bridge. With br_netfilter loaded, switched traffic
// passes the FORWARD chain, whose policy docker sets to DROP. Hosts
// without iptables filter nothing and need no rule. The rule's comment
// carries the owner's mark; adding it also removes the unmarked rule an
// older berth added for this bridge.
func (m *Manager) forwardRule(add bool) error {
	if add {
		if err := iptablesRule(false, legacyRuleComment(m.bridge), m.bridge); err != nil {
			return err
		}
	}
	return iptablesRule(add, ruleComment(m.owner.Mark, m.bridge), m.bridge)
}

func ruleComment(mark, bridge string) string { return "berth " + mark + " bridge " + bridge }
func legacyRuleComment(bridge string) string { return "berth bridge " + bridge }

func iptablesRule(add bool, comment, bridge string) error {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		return nil
	}
	rule := []string{"FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", comment, "-j", "ACCEPT"}
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
	return RemoveBridge(m.bridge, m.owner.Mark)
}

// RemoveBridge deletes bridge and its forwarding rule if they carry mark;
// a bridge of another owner is left alone and named in the error.
func RemoveBridge(bridge, mark string) error {
	err := iptablesRule(false, ruleComment(mark, bridge), bridge)
	link, lerr := netlink.LinkByName(bridge)
	if lerr != nil {
		return err
	}
	if got, _, ok := owner.ParseTag(link.Attrs().Alias); !ok || got != mark {
		return errors.Join(err, fmt.Errorf("network: bridge %s is not marked %s (ifalias %q): left alone", bridge, mark, link.Attrs().Alias))
	}
	return errors.Join(err, netlink.LinkDel(link))
}

// Names of a container's netns and host veth. The veth's name is bounded
// by IFNAMSIZ (15 characters): "v", four digits of the mark, ten of the
// id; its ifalias carries the whole mark and id. An older berth named
// them <bridge>-<id[:12]> and vb<id[:12]>: those names are still removed
// for containers this daemon's state knows.
func (m *Manager) netnsName(id string) string { return "berth-" + m.owner.Mark + "-" + short(id) }
func (m *Manager) hostVeth(id string) string {
	return "v" + m.owner.Mark[:4] + id[:min(10, len(id))]
}
func (m *Manager) legacyNetns(id string) string { return m.bridge + "-" + short(id) }
func legacyVeth(id string) string               { return "vb" + short(id) }

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
		LinkAttrs:     netlink.LinkAttrs{Name: m.hostVeth(id), MasterIndex: br.Attrs().Index},
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
	if err := netlink.LinkSetAlias(host, m.owner.Tag(id)); err != nil {
		return Attachment{}, fmt.Errorf("network: mark veth %s: %w", veth.Name, err)
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
	unlock, err := hostLock(".berth-netns.lock")
	if err != nil {
		return err
	}
	defer unlock()
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

// hostLock takes a host-wide flock on /run/name, shared by every berth
// process, and returns its release.
func hostLock(name string) (func(), error) {
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(NetnsDir), name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("network: lock %s: %w", lock.Name(), err)
	}
	return func() { lock.Close() }, nil
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
// It is idempotent and removes whatever is left of a partial Attach, and
// also the names an older berth gave them (id is this daemon's).
func (m *Manager) Detach(id string) error {
	var errs []error
	m.mu.Lock()
	br, _ := netlink.LinkByName(m.bridge)
	for _, name := range []string{m.hostVeth(id), legacyVeth(id)} {
		link, err := netlink.LinkByName(name)
		if err != nil || !m.ownsVeth(link, br) {
			continue
		}
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("network: delete veth %s: %w", name, err))
		}
	}
	m.mu.Unlock()
	for _, name := range []string{m.netnsName(id), m.legacyNetns(id)} {
		if err := deleteNetns(filepath.Join(NetnsDir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.ipam.Release(id); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ownsVeth: the veth carries this daemon's mark, or (a partial Attach, or
// an older berth's) carries none and is attached to its bridge.
func (m *Manager) ownsVeth(l, br netlink.Link) bool {
	if l.Type() != "veth" {
		return false
	}
	if mark, _, ok := owner.ParseTag(l.Attrs().Alias); ok {
		return mark == m.owner.Mark
	}
	return br != nil && l.Attrs().Alias == "" && l.Attrs().MasterIndex == br.Attrs().Index
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

// Cleanup removes this daemon's attachments that belong to no live
// container: addresses in its allocator, netns and veths carrying its
// mark, left by a crash; each one is logged. Those of other daemons (or
// unmarked, of an older berth) are left alone and logged at debug level.
func (m *Manager) Cleanup(live func(id string) bool) error {
	var errs []error
	owners, err := m.ipam.Owners()
	if err != nil {
		return err
	}
	for id := range owners {
		if !live(id) {
			m.log.Info("removing the network of a container this daemon no longer knows", "id", short(id))
			errs = append(errs, m.Detach(id))
		}
	}
	liveShort := func(s string) bool {
		for id := range owners {
			if strings.HasPrefix(id, s) && live(id) {
				return true
			}
		}
		return false
	}
	ents, _ := os.ReadDir(NetnsDir)
	ours := "berth-" + m.owner.Mark + "-"
	for _, e := range ents {
		name := e.Name()
		s, ok := strings.CutPrefix(name, ours)
		switch {
		case ok && len(s) == 12 && !liveShort(s):
			m.log.Info("removing an orphan netns of this daemon", "netns", name)
			errs = append(errs, deleteNetns(filepath.Join(NetnsDir, name)))
		case !ok && strings.HasPrefix(name, "berth-"):
			m.log.Debug("leaving alone another daemon's netns", "netns", name)
		case strings.HasPrefix(name, m.bridge+"-") && !liveShort(strings.TrimPrefix(name, m.bridge+"-")):
			m.log.Debug("leaving alone an unmarked netns named after this daemon's bridge (another daemon's, or an older berth's)", "netns", name)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	br, _ := netlink.LinkByName(m.bridge)
	links, err := netlink.LinkList()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, l := range links {
		if l.Type() != "veth" {
			continue
		}
		mark, id, tagged := owner.ParseTag(l.Attrs().Alias)
		switch {
		case tagged && mark == m.owner.Mark && !live(id):
			m.log.Info("removing an orphan veth of this daemon", "veth", l.Attrs().Name, "id", short(id))
			errs = append(errs, netlink.LinkDel(l))
		case tagged && mark != m.owner.Mark:
			m.log.Debug("leaving alone another daemon's veth", "veth", l.Attrs().Name, "mark", mark)
		case !tagged && br != nil && l.Attrs().MasterIndex == br.Attrs().Index && !liveShort(strings.TrimPrefix(l.Attrs().Name, "vb")):
			// An older berth's, of a container this state does not know.
			m.log.Debug("leaving alone an unmarked veth on this daemon's bridge", "veth", l.Attrs().Name)
		}
	}
	return errors.Join(errs...)
}
