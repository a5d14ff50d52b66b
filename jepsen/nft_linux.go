package jepsen

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// nftTableName is the nftables table (family ip) that holds the cuts.
// Heal deletes it whole.
const nftTableName = "opencluster_jepsen"

// nftNet cuts links with nftables rules programmed over netlink (no nft
// binary): one table with a chain on the input hook, and per dropped
// direction a rule `iifname "lo" ip saddr A ip daddr B counter drop`.
// Node-to-node packets all travel over lo, and pass its input hook on the
// receiving side, so dropping there cuts the direction A→B for every
// protocol (Raft and forwarding over TCP, gossip over TCP and UDP).
// Established connections stall rather than reset, as in a real
// partition.
//
// It must run in a private network namespace (InPrivateNetNS): a rule
// there cannot touch the host's traffic, and vanishes with the namespace
// even if the harness dies without healing.
type nftNet struct {
	conn  *nftables.Conn
	table *nftables.Table
	chain *nftables.Chain

	// mu serialises Partition, Heal and Close; installed reports that the
	// table exists; replaced counts the packets dropped by rules that a
	// later Partition replaced.
	mu        sync.Mutex
	installed bool
	replaced  uint64
}

// NewNFTNet returns the nftables Net. It refuses to work outside a
// private network namespace, and checks that it may program the packet
// filter (CAP_NET_ADMIN) by creating and deleting its table.
func NewNFTNet() (Net, error) {
	if !InPrivateNetNS() {
		return nil, fmt.Errorf("%w: refusing to program the host's packet filter (run inside the private namespace)", ErrNoNetNS)
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("%w: netlink: %w", ErrNoPartitions, err)
	}
	n := &nftNet{conn: conn}
	n.table = &nftables.Table{Family: nftables.TableFamilyIPv4, Name: nftTableName}
	n.chain = &nftables.Chain{
		Name: "input", Table: n.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter,
	}
	// Probe: create the (empty) table and delete it again.
	conn.AddTable(n.table)
	conn.AddChain(n.chain)
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("%w: create nftables table: %w", ErrNoPartitions, err)
	}
	conn.DelTable(n.table)
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("%w: delete nftables table: %w", ErrNoPartitions, err)
	}
	return n, nil
}

// Partition installs g in one netlink batch, replacing the cuts in place:
// the kernel applies the batch atomically.
func (n *nftNet) Partition(ctx context.Context, g Grudge) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.installed {
		n.replaced += n.counted()
		n.conn.DelTable(n.table)
	}
	n.conn.AddTable(n.table)
	n.conn.AddChain(n.chain)
	for _, l := range g.Links() {
		n.conn.AddRule(&nftables.Rule{Table: n.table, Chain: n.chain, Exprs: dropExprs(nodeAddr(l.From), nodeAddr(l.To))})
	}
	if err := n.conn.Flush(); err != nil {
		// The batch is all or nothing: what was installed before still is.
		return fmt.Errorf("jepsen: install partition: %w", err)
	}
	n.installed = true
	return nil
}

// Heal reads the rules' counters and deletes the table.
func (n *nftNet) Heal(ctx context.Context) (uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.healLocked()
}

func (n *nftNet) healLocked() (uint64, error) {
	if !n.installed {
		return 0, nil
	}
	dropped := n.replaced + n.counted()
	n.conn.DelTable(n.table)
	if err := n.conn.Flush(); err != nil {
		return dropped, fmt.Errorf("jepsen: heal partition: %w", err)
	}
	n.installed, n.replaced = false, 0
	return dropped, nil
}

// counted returns the packets the installed rules dropped (0 if the
// counters cannot be read: they are for the report, not for safety).
func (n *nftNet) counted() uint64 {
	rules, err := n.conn.GetRules(n.table, n.chain)
	if err != nil {
		return 0
	}
	return droppedPackets(rules)
}

// Close heals.
func (n *nftNet) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, err := n.healLocked()
	return err
}

// droppedPackets sums the counters of rules.
func droppedPackets(rules []*nftables.Rule) uint64 {
	var total uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				total += c.Packets
			}
		}
	}
	return total
}

// nodeAddr is node n's IPv4 address.
func nodeAddr(n int) net.IP { return net.ParseIP(NodeIP(n)).To4() }

// dropExprs is the rule `iifname "lo" ip saddr src ip daddr dst counter
// drop` (src and dst IPv4).
func dropExprs(src, dst net.IP) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
		// IPv4 header: source address at offset 12, destination at 16.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: src.To4()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dst.To4()},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// ifname is an interface name as the kernel compares it: NUL-padded to
// IFNAMSIZ (16) bytes.
func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}
