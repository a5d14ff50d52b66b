package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/peer"
)

// peers is a clustered node's gossip and Raft transport.
type peers struct {
	gossip    *peer.Gossip
	transport *peer.Transport
	remote    *peer.Remote
	node      atomic.Pointer[kv.Node]
	cancel    context.CancelFunc
	done      chan struct{}
}

// startPeers starts gossip and the transport and fills in kcfg's
// clustering fields. The node id of a new data directory is chosen here: 1
// for the node that bootstraps, random for one that joins.
func startPeers(cfg serverConfig, kcfg *kv.Config) (*peers, error) {
	id, found, err := kv.ReadNodeID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if !found {
		id = 1
		if len(cfg.Join) > 0 {
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return nil, err
			}
			id = binary.BigEndian.Uint64(b[:])>>1 | 2 // never 0 or 1
		}
	}
	kcfg.NodeID = id
	g, err := peer.StartGossip(peer.GossipConfig{
		NodeID: id, BindAddr: cfg.GossipAddr, GRPCAddr: kcfg.AdvertiseAddr, Version: version,
		Logger: cfg.Logger, Fast: cfg.FastGossip,
	})
	if err != nil {
		return nil, err
	}
	p := &peers{gossip: g, done: make(chan struct{})}
	host, _, _ := net.SplitHostPort(kcfg.AdvertiseAddr)
	p.transport = peer.NewTransport(peer.TransportConfig{
		Logger:    cfg.Logger,
		LocalHost: host,
		ClusterID: func() string {
			if n := p.node.Load(); n != nil {
				return n.ClusterID()
			}
			return ""
		},
		LocalID: func() uint64 { return id },
		Resolve: p.addrOf,
	})
	kcfg.Transport = p.transport
	p.remote = peer.NewRemote(host, p.addrOf)
	kcfg.Remote = p.remote
	kcfg.Directory = g
	if len(cfg.Join) > 0 && !found {
		kcfg.Join = func(ctx context.Context, id uint64) (*cmdpb.JoinResponse, error) {
			return p.join(ctx, cfg.Join, id, kcfg.AdvertiseAddr, host)
		}
	}
	// Keep contacting the seeds while gossip sees no other member: a
	// restarted node rejoins gossip, and memberlist forgets dead members
	// after a while (it never re-dials them by itself). The seeds are
	// --join and the peers this node last saw alive, saved in its data
	// directory, so that a node started without --join (the first one)
	// finds its cluster again after a restart.
	peersFile := filepath.Join(cfg.DataDir, gossipPeersFile)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		defer close(p.done)
		saved := loadGossipPeers(peersFile)
		for {
			if seeds := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(cfg.Join), saved...)))); len(seeds) > 0 && !seesOthers(g, id) {
				jctx, jcancel := context.WithTimeout(ctx, 2*time.Second)
				_ = g.Join(jctx, seeds)
				jcancel()
			}
			if alive := alivePeers(g, id); len(alive) > 0 && !slices.Equal(alive, saved) {
				if err := saveGossipPeers(peersFile, alive); err != nil {
					cfg.Logger.Warn("saving the gossip peers", "err", err)
				} else {
					saved = alive
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}()
	return p, nil
}

// gossipPeersFile holds, in the data directory, the gossip addresses of
// the peers a node last saw alive, one per line.
const gossipPeersFile = "gossip-peers"

// seesOthers reports whether gossip sees any member other than self alive.
func seesOthers(g *peer.Gossip, self uint64) bool { return len(alivePeers(g, self)) > 0 }

// alivePeers returns the gossip addresses of the live members other than
// self, sorted.
func alivePeers(g *peer.Gossip, self uint64) []string {
	var out []string
	for _, m := range g.Members() {
		if m.ID != self && m.Alive && m.GossipAddr != "" {
			out = append(out, m.GossipAddr)
		}
	}
	slices.Sort(out)
	return out
}

func loadGossipPeers(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(raw))
}

// saveGossipPeers replaces the file atomically (write, sync, rename).
func saveGossipPeers(path string, addrs []string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(strings.Join(addrs, "\n") + "\n")
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// addrOf resolves a node's gRPC address: gossip first, then the registry.
func (p *peers) addrOf(id uint64) string {
	if a := p.gossip.Addr(id); a != "" {
		return a
	}
	if n := p.node.Load(); n != nil {
		return n.AddrOf(id)
	}
	return ""
}

// join registers this node through any live member (which forwards to the
// primary) until one accepts.
func (p *peers) join(ctx context.Context, seeds []string, id uint64, addr, host string) (*cmdpb.JoinResponse, error) {
	if err := p.gossip.Join(ctx, seeds); err != nil {
		return nil, err
	}
	var last error
	for {
		for _, m := range p.gossip.Members() {
			if m.ID == id || m.GRPCAddr == "" || !m.Alive {
				continue
			}
			conn, err := grpc.NewClient(m.GRPCAddr, peer.Dialer(host)...)
			if err != nil {
				last = err
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := cmdpb.NewInternalClient(conn).Join(cctx, &cmdpb.JoinRequest{NodeId: id, Addr: addr})
			cancel()
			_ = conn.Close()
			if err == nil {
				return resp, nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("join through %v: %w (last: %v)", seeds, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *peers) setNode(n *kv.Node) {
	if p != nil {
		p.node.Store(n)
	}
}

// close stops the rejoin loop, the transport and gossip.
func (p *peers) close() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
	p.transport.Close()
	p.remote.Close()
	_ = p.gossip.Close()
}
