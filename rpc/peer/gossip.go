package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipConfig configures a node's memberlist.
type GossipConfig struct {
	NodeID uint64
	// BindAddr is the gossip address (host:port), TCP and UDP.
	BindAddr string
	// GRPCAddr is published in the node's metadata.
	GRPCAddr string
	// Version is published in the node's metadata.
	Version string
	Logger  *slog.Logger
	// Fast shortens memberlist's timers for tests on loopback.
	Fast bool
}

// Member is a node as gossip sees it.
type Member struct {
	ID         uint64
	GRPCAddr   string
	GossipAddr string
	Alive      bool
}

type memberMeta struct {
	GRPC    string `json:"grpc"`
	Version string `json:"version,omitempty"`
}

// Gossip is the failure detector and address book.
type Gossip struct {
	ml  *memberlist.Memberlist
	log *slog.Logger
	mu  struct {
		sync.Mutex
		members map[uint64]Member
	}
}

// StartGossip starts memberlist on cfg.BindAddr.
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("peer: gossip address %q: %w", cfg.BindAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("peer: gossip port %q: %w", portStr, err)
	}
	g := &Gossip{log: cfg.Logger}
	g.mu.members = make(map[uint64]Member)
	meta, err := json.Marshal(memberMeta{GRPC: cfg.GRPCAddr, Version: cfg.Version})
	if err != nil {
		return nil, err
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.SuspicionMult = 2
	}
	mc.Name = strconv.FormatUint(cfg.NodeID, 10)
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	mc.Delegate = delegate{meta: meta}
	mc.Events = events{g: g}
	mc.LogOutput = io.Discard
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: port, Logger: log.New(io.Discard, "", 0),
	})
	if err != nil {
		return nil, fmt.Errorf("peer: gossip on %s: %w", cfg.BindAddr, err)
	}
	mc.Transport = &boundTransport{NetTransport: nt, local: net.ParseIP(host)}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("peer: gossip: %w", err)
	}
	g.ml = ml
	return g, nil
}

// Join contacts seeds (gossip addresses) until one answers or ctx ends.
func (g *Gossip) Join(ctx context.Context, seeds []string) error {
	for {
		n, err := g.ml.Join(seeds)
		if n > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("peer: join %v: %w (last: %v)", seeds, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Addr returns a live or dead member's gRPC address ("" if never seen).
func (g *Gossip) Addr(id uint64) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.members[id].GRPCAddr
}

// GossipAddr returns a member's gossip address ("" if never seen).
func (g *Gossip) GossipAddr(id uint64) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.members[id].GossipAddr
}

// Alive reports whether gossip sees node id alive now.
func (g *Gossip) Alive(id uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.members[id].Alive
}

// Members returns every member seen, alive or not.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.mu.members))
	for _, m := range g.mu.members {
		out = append(out, m)
	}
	return out
}

// Close leaves the cluster gracefully and stops memberlist.
func (g *Gossip) Close() error {
	_ = g.ml.Leave(time.Second)
	return g.ml.Shutdown()
}

func (g *Gossip) update(n *memberlist.Node, alive bool) {
	id, err := strconv.ParseUint(n.Name, 10, 64)
	if err != nil {
		return
	}
	var meta memberMeta
	_ = json.Unmarshal(n.Meta, &meta)
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.mu.members[id]
	m.ID, m.Alive, m.GossipAddr = id, alive, n.Address()
	if meta.GRPC != "" {
		m.GRPCAddr = meta.GRPC
	}
	g.mu.members[id] = m
}

type delegate struct{ meta []byte }

func (d delegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

type events struct{ g *Gossip }

func (e events) NotifyJoin(n *memberlist.Node)   { e.g.update(n, true) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.g.update(n, false) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.g.update(n, true) }

// boundTransport makes memberlist's TCP connections leave from the node's
// own address (its UDP packets already do: they go out of the bound
// socket).
type boundTransport struct {
	*memberlist.NetTransport
	local net.IP
}

func (t *boundTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: t.local}}
	return d.Dial("tcp", addr)
}

func (t *boundTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}
