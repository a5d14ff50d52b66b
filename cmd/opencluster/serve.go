package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/ocpb"
	"github.com/opencluster/opencluster/rpc/peer"
	"github.com/opencluster/opencluster/rpc/server"
)

// serverConfig is what `start` and `demo` need to run one node.
type serverConfig struct {
	DataDir  string
	Addr     string // gRPC listen address
	HTTPAddr string // metrics, /status and pprof; empty: none
	Buckets  int
	Logger   *slog.Logger
	// GossipAddr enables clustering: memberlist listens here and Raft
	// talks to other nodes. Empty: a one-node cluster with no peers.
	GossipAddr string
	// Join lists gossip addresses of existing nodes; a new data directory
	// joins their cluster instead of bootstrapping one.
	Join []string
	// Replicas is the replica count of every group (default 3).
	Replicas int
	// FastGossip shortens failure detection (tests, the demo).
	FastGossip bool
	// Rebalance runs the rebalancer, with DeadAfter.
	Rebalance bool
	// NoLeaseReads makes every linearizable read take a ReadIndex round.
	NoLeaseReads bool
	DeadAfter    time.Duration
	// SnapshotMiBps bounds outgoing snapshots (0: kv's default; negative:
	// unbounded).
	SnapshotMiBps int
	// TestAdmin registers the fault-injection service (cmdpb.TestAdmin):
	// a skewable oracle clock and planted bugs, for the consistency
	// harness only.
	TestAdmin bool
}

// runningServer is one node serving gRPC (and HTTP).
type runningServer struct {
	node     *kv.Node
	srv      *server.Server
	peers    *peers // nil without GossipAddr
	grpc     *grpc.Server
	http     *http.Server
	addr     string
	httpAddr string
	done     chan error
}

// newRegistry returns the node's metrics registry with the Go runtime's
// and the process's collectors. The runtime's include the scheduler's
// (go_sched_latencies_seconds: how long runnable goroutines waited for a
// thread), which tell a node starved of CPU from one waiting for its disk.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// startServer opens the node and starts serving; Stop ends it.
func startServer(cfg serverConfig) (*runningServer, error) {
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	reg := newRegistry()
	kcfg := kv.DefaultConfig()
	kcfg.DataDir = cfg.DataDir
	kcfg.Buckets = cfg.Buckets
	kcfg.Logger = cfg.Logger
	kcfg.Registerer = reg
	kcfg.AdvertiseAddr = lis.Addr().String()
	if cfg.Replicas != 0 {
		kcfg.Replicas = cfg.Replicas
	}
	kcfg.Rebalance, kcfg.DeadAfter = cfg.Rebalance, cfg.DeadAfter
	kcfg.DisableLeaseReads = cfg.NoLeaseReads
	kcfg.SnapshotRate = int64(cfg.SnapshotMiBps) << 20
	var admin *peer.TestAdmin
	if cfg.TestAdmin {
		clock := ts.NewSkewedClock(ts.RealClock{})
		kcfg.OracleClock, kcfg.Faults = clock, &kv.Faults{}
		admin = peer.NewTestAdmin(clock, kcfg.Faults)
		cfg.Logger.Warn("the test-only admin service is on: clock skew and planted bugs can be switched remotely")
	}
	var p *peers
	if cfg.GossipAddr != "" {
		if p, err = startPeers(cfg, &kcfg); err != nil {
			lis.Close()
			return nil, err
		}
	}
	node, err := kv.Open(kcfg)
	if err != nil {
		lis.Close()
		p.close()
		return nil, err
	}
	p.setNode(node)
	scfg := server.DefaultConfig()
	scfg.Logger = cfg.Logger
	scfg.Registerer = reg
	srv, err := server.New(scfg, node)
	if err != nil {
		lis.Close()
		node.Close()
		p.close()
		return nil, err
	}
	g := grpc.NewServer(srv.GRPCServerOptions()...)
	srv.Register(g)
	if admin != nil {
		admin.Register(g)
	}
	if p != nil {
		host, _, _ := net.SplitHostPort(kcfg.AdvertiseAddr)
		peer.NewService(node, func(addr string) (*grpc.ClientConn, error) { return grpc.NewClient(addr, peer.Dialer(host)...) }).Register(g)
	}
	rs := &runningServer{node: node, srv: srv, peers: p, grpc: g, addr: lis.Addr().String(), done: make(chan error, 2)}
	go func() { rs.done <- g.Serve(lis) }()
	if cfg.HTTPAddr != "" {
		hl, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			rs.Stop()
			return nil, fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
		}
		rs.httpAddr = hl.Addr().String()
		rs.http = &http.Server{Handler: httpHandler(reg, node), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := rs.http.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				rs.done <- err
			}
		}()
	}
	return rs, nil
}

// Halt stops the node abruptly, as a crash would look to the others:
// connections are cut at once, nothing is handed over.
func (rs *runningServer) Halt() {
	if rs.http != nil {
		// The HTTP handlers read the engine (/status, /debug/pebble):
		// let the running ones finish before it closes. Nothing a peer
		// sees depends on them.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if rs.http.Shutdown(ctx) != nil {
			_ = rs.http.Close()
		}
		cancel()
	}
	rs.grpc.Stop()
	_ = rs.node.Close()
	rs.peers.close()
}

// Stop hands this node's leaderships to other nodes, stops serving (new
// requests that arrive meanwhile are forwarded) and closes the node.
func (rs *runningServer) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	rs.node.HandOff(ctx)
	cancel()
	if rs.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = rs.http.Shutdown(ctx)
		cancel()
	}
	stopped := make(chan struct{})
	go func() { rs.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		rs.grpc.Stop() // streams (keep-alives) do not end by themselves
	}
	_ = rs.node.Close()
	rs.peers.close()
}

func httpHandler(reg *prometheus.Registry, node *kv.Node) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pebble", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, node.StorageMetrics())
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		st, err := node.Status(ctx, &ocpb.StatusRequest{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		held, err := node.List(ctx, &ocpb.ListRequest{HeldOnly: true})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = statusPage.Execute(w, struct {
			Status *ocpb.StatusResponse
			Locks  []*ocpb.LockInfo
		}{st, held.Locks})
	})
	return mux
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><title>OpenCluster node {{.Status.NodeId}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}</style>
</head><body>
<h1>OpenCluster node {{.Status.NodeId}}</h1>
<p>cluster {{.Status.ClusterId}} · {{.Status.BucketCount}} buckets · now {{.Status.Now}} · <a href="/metrics">metrics</a> · <a href="/debug/pprof/">pprof</a></p>
<h2>Members</h2>
<table><tr><th>id</th><th>address</th><th>alive</th></tr>
{{range .Status.Members}}<tr><td>{{.Id}}</td><td>{{.Addr}}</td><td>{{.Alive}}</td></tr>{{end}}</table>
<h2>Locks held</h2>
<table><tr><th>name</th><th>kind</th><th>fence</th><th>owner</th><th>expires in</th><th>waiters</th><th>keys</th></tr>
{{range .Locks}}<tr><td>{{.Name}}</td><td>{{.Kind}}</td><td>{{.Fence}}</td><td>{{.Owner}}</td><td>{{if .ExpiresIn}}{{.ExpiresIn.AsDuration}}{{end}}</td><td>{{.Waiters}}</td><td>{{len .Keys}}</td></tr>{{end}}</table>
<h2>Buckets</h2>
<table><tr><th>bucket</th><th>replicas</th><th>leader</th><th>applied</th></tr>
{{range .Status.Buckets}}<tr><td>{{.Bucket}}</td><td>{{.Replicas}}</td><td>{{.Leader}}</td><td>{{.Applied}}</td></tr>{{end}}</table>
</body></html>
`))
