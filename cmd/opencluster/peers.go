package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
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
	// Keep contacting the seeds: a restarted node rejoins gossip, and
	// memberlist forgets dead members after a while (it never re-dials them
	// by itself).
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		defer close(p.done)
		for {
			if len(cfg.Join) > 0 && len(g.Members()) <= 1 {
				jctx, jcancel := context.WithTimeout(ctx, 2*time.Second)
				_ = g.Join(jctx, cfg.Join)
				jcancel()
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
