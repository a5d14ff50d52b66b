// Package systems starts the servers the bench measures (OpenCluster by
// re-executing the opencluster binary, a Redis server from Debian's
// package, an etcd cluster built from the Go module proxy) and returns
// each as a bench.System. Whatever it starts is stopped by the System's
// Stop, and by Start itself when starting fails half way.
package systems

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencluster/opencluster/internal/bench"
	"github.com/opencluster/opencluster/internal/bench/octarget"
	"github.com/opencluster/opencluster/internal/bench/redistarget"
	"github.com/opencluster/opencluster/internal/freeport"
	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// startTimeout bounds how long a server may take to serve.
const startTimeout = 60 * time.Second

// stopTimeout is how long a server has to exit after SIGTERM before it
// is killed.
const stopTimeout = 10 * time.Second

// Config says where and how to start servers.
type Config struct {
	// Exe is the opencluster binary (os.Executable()); its `start`
	// command runs our servers.
	Exe string
	// WorkDir holds the servers' data and logs; the caller creates and
	// removes it.
	WorkDir string
	// CacheDir holds the etcd server and the peer binary, built on first
	// use.
	CacheDir string
	// SourceDir is the OpenCluster source tree: its cmd/ocbench-peers is
	// built into the peer binary, and etcd from its etcdserver module.
	// Needed only for etcd.
	SourceDir string
	// Nodes is the server count of each system.
	Nodes int
	// Buckets is the bucket count of a new OpenCluster node (0: the
	// server's default).
	Buckets int
	// Endpoints of a running OpenCluster cluster: measured instead of
	// starting one.
	Endpoints []string
	// EtcdEndpoints of a running etcd cluster (host:port, plain HTTP):
	// measured instead of starting one, through the same driver.
	EtcdEndpoints []string
	// Notes receives what the user should know (builds, installs).
	Notes io.Writer
}

// Start starts the system target and waits until it serves.
func Start(ctx context.Context, cfg Config, target string) (bench.System, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout+buildTimeout)
	defer cancel()
	switch target {
	case bench.OpenCluster:
		return startOpenCluster(ctx, cfg)
	case bench.Redis:
		return startRedis(ctx, cfg)
	case bench.Etcd:
		return startEtcd(ctx, cfg)
	}
	return nil, fmt.Errorf("%w: target %q", bench.ErrInvalid, target)
}

// stopAll stops what a failed Start had started.
func stopAll(c *bench.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	_ = c.Stop(ctx)
}

// StopTimeout returns a context for stopping systems.
func StopTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), stopTimeout)
}

func startOpenCluster(ctx context.Context, cfg Config) (bench.System, error) {
	if len(cfg.Endpoints) > 0 {
		t, err := octarget.New(ctx, cfg.Endpoints)
		if err != nil {
			return nil, err
		}
		return bench.NewLocalSystem(bench.OpenCluster, len(cfg.Endpoints), nil, t), nil
	}
	// One node per loop turn. With several nodes, node 1 bootstraps the
	// cluster with a --gossip-addr and nodes 2..n join it; the wait below
	// lasts until Status reports every bucket's replicas in place.
	servers := &bench.Cluster{}
	var endpoints []string
	var seed string
	for i := range cfg.Nodes {
		addr, err := freeport.Addr("127.0.0.1")
		if err != nil {
			stopAll(servers)
			return nil, err
		}
		name := fmt.Sprintf("opencluster-%d", i+1)
		dir := filepath.Join(cfg.WorkDir, name)
		argv := []string{cfg.Exe, "start", "--data-dir", dir, "--addr", addr, "--http-addr", "", "--log-level", "warn"}
		if cfg.Buckets > 0 {
			argv = append(argv, "--buckets", strconv.Itoa(cfg.Buckets))
		}
		if cfg.Nodes > 1 {
			gossip, err := freeport.Addr("127.0.0.1")
			if err != nil {
				stopAll(servers)
				return nil, err
			}
			argv = append(argv, "--gossip-addr", gossip)
			if i == 0 {
				seed = gossip
			} else {
				argv = append(argv, "--join", seed)
			}
		}
		p, err := bench.StartProc(name, argv, filepath.Join(cfg.WorkDir, name+".log"))
		if err != nil {
			stopAll(servers)
			return nil, err
		}
		servers.Procs = append(servers.Procs, p)
		endpoints = append(endpoints, addr)
	}
	for i, p := range servers.Procs {
		c, err := client.New(ctx, endpoints[i:i+1])
		if err == nil {
			err = p.WaitReady(ctx, func(ctx context.Context) error {
				_, err := c.Status(ctx)
				return err
			})
			c.Close()
		}
		if err != nil {
			stopAll(servers)
			return nil, err
		}
	}
	if cfg.Nodes > 1 {
		if err := waitReplicated(ctx, endpoints, min(cfg.Nodes, 3)); err != nil {
			stopAll(servers)
			return nil, err
		}
	}
	t, err := octarget.New(ctx, endpoints)
	if err != nil {
		stopAll(servers)
		return nil, err
	}
	return bench.NewLocalSystem(bench.OpenCluster, cfg.Nodes, servers, t), nil
}

// waitReplicated waits until the cluster has settled: every bucket has
// want replicas and a leader, the meta group its voters, no move is in
// progress and leaderships are within one of the mean per node, twice in
// a row half a second apart. The rebalancer moves replicas and
// leaderships for a few seconds after a cluster starts; measuring then
// would time those moves, not the workload.
func waitReplicated(ctx context.Context, endpoints []string, want int) error {
	c, err := client.New(ctx, endpoints)
	if err != nil {
		return err
	}
	defer c.Close()
	settled := 0
	for {
		st, err := c.Status(ctx)
		if err == nil && clusterSettled(st, want, len(endpoints)) {
			if settled++; settled == 2 {
				return nil
			}
		} else {
			settled = 0
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("opencluster: buckets not replicated: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// clusterSettled reports whether st shows the cluster of nodes nodes
// settled (see waitReplicated).
func clusterSettled(st *ocpb.StatusResponse, want, nodes int) bool {
	if len(st.GetBuckets()) == 0 || len(st.GetMoves()) > 0 || len(st.GetMeta().GetReplicas()) < min(nodes, 5) {
		return false
	}
	for _, b := range st.GetBuckets() {
		if len(b.GetReplicas()) < want || b.GetLeader() == "" {
			return false
		}
	}
	_, leaders := client.Holdings(st)
	mean := float64(len(st.GetBuckets())) / float64(nodes)
	for _, m := range st.GetMembers() {
		if d := float64(leaders[m.GetId()]) - mean; d > 1 || d < -1 {
			return false
		}
	}
	return true
}

func startRedis(ctx context.Context, cfg Config) (bench.System, error) {
	if cfg.Nodes != 1 {
		return nil, fmt.Errorf("%w: redis runs as one server, not %d", bench.ErrInvalid, cfg.Nodes)
	}
	bin, err := ensureRedis(ctx, cfg.Notes)
	if err != nil {
		return nil, err
	}
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	dir := filepath.Join(cfg.WorkDir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// No snapshots and no append-only file: the in-memory baseline.
	argv := []string{bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"}
	p, err := bench.StartProc("redis", argv, filepath.Join(cfg.WorkDir, "redis.log"))
	if err != nil {
		return nil, err
	}
	servers := &bench.Cluster{Procs: []*bench.Proc{p}}
	if err := p.WaitReady(ctx, func(ctx context.Context) error { return redistarget.Ping(ctx, addr) }); err != nil {
		stopAll(servers)
		return nil, err
	}
	return bench.NewLocalSystem(bench.Redis, 1, servers, redistarget.New(addr)), nil
}

// etcdSupports: the etcd driver runs every workload.
func etcdSupports(bench.Workload) bool { return true }

func startEtcd(ctx context.Context, cfg Config) (bench.System, error) {
	if len(cfg.EtcdEndpoints) > 0 {
		return openEtcd(ctx, cfg)
	}
	etcd, err := EnsureEtcd(ctx, cfg)
	if err != nil {
		return nil, err
	}
	peer, err := EnsurePeer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	type member struct{ name, client, peer string }
	var members []member
	var initial []string
	for i := range cfg.Nodes {
		ca, err := freeport.Addr("127.0.0.1")
		if err != nil {
			return nil, err
		}
		pa, err := freeport.Addr("127.0.0.1")
		if err != nil {
			return nil, err
		}
		m := member{name: fmt.Sprintf("etcd-%d", i+1), client: ca, peer: pa}
		members = append(members, m)
		initial = append(initial, m.name+"=http://"+m.peer)
	}
	servers := &bench.Cluster{}
	var endpoints []string
	for _, m := range members {
		argv := []string{etcd,
			"--name", m.name, "--data-dir", filepath.Join(cfg.WorkDir, m.name),
			"--listen-client-urls", "http://" + m.client, "--advertise-client-urls", "http://" + m.client,
			"--listen-peer-urls", "http://" + m.peer, "--initial-advertise-peer-urls", "http://" + m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "bench",
			"--initial-cluster-state", "new", "--log-level", "warn",
		}
		p, err := bench.StartProc(m.name, argv, filepath.Join(cfg.WorkDir, m.name+".log"))
		if err != nil {
			stopAll(servers)
			return nil, err
		}
		servers.Procs = append(servers.Procs, p)
		endpoints = append(endpoints, m.client)
	}
	for i, p := range servers.Procs {
		url := "http://" + endpoints[i] + "/health"
		if err := p.WaitReady(ctx, func(ctx context.Context) error { return etcdHealthy(ctx, url) }); err != nil {
			stopAll(servers)
			return nil, err
		}
	}
	return bench.NewPeerSystem(bench.Etcd, servers, peer, endpoints, etcdSupports), nil
}

// openEtcd measures a running etcd cluster at cfg.EtcdEndpoints, once
// every member answers healthy: so that etcd on other machines can be set
// beside an OpenCluster measured with Endpoints. The bench started no
// server, so it knows neither their RSS nor their CPU.
func openEtcd(ctx context.Context, cfg Config) (bench.System, error) {
	for _, ep := range cfg.EtcdEndpoints {
		url := "http://" + ep + "/health"
		if err := etcdHealthy(ctx, url); err != nil {
			return nil, fmt.Errorf("etcd member %s: %w", ep, err)
		}
	}
	peer, err := EnsurePeer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return bench.NewPeerSystem(bench.Etcd, nil, peer, cfg.EtcdEndpoints, etcdSupports), nil
}

// etcdHealthy asks a member's /health endpoint (true once it has a
// leader and serves).
func etcdHealthy(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("%w: etcd /health answered %d %s", bench.ErrProcess, resp.StatusCode, body)
	}
	return nil
}

// StopAll stops systems in reverse order, each within the stop timeout.
func StopAll(systems []bench.System) error {
	var errs []error
	for _, s := range slices.Backward(systems) {
		ctx, cancel := StopTimeout()
		errs = append(errs, s.Stop(ctx))
		cancel()
	}
	return errors.Join(errs...)
}
