package kvtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// slowSyncFS makes every sync of a file take at least delay, as on a
// disk under load, so that a round's fsync is long enough for other
// groups' traffic to arrive during it.
type slowSyncFS struct {
	vfs.FS
	delay time.Duration
}

func (fs slowSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return slowSyncFile{File: f, delay: fs.delay}, err
}

func (fs slowSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return slowSyncFile{File: f, delay: fs.delay}, err
}

type slowSyncFile struct {
	vfs.File
	delay time.Duration
}

func (f slowSyncFile) Sync() error {
	time.Sleep(f.delay)
	return f.File.Sync()
}

func (f slowSyncFile) SyncData() error {
	time.Sleep(f.delay)
	return f.File.SyncData()
}

// TestAcksServedDuringSync: with fsyncs as slow as a loaded disk's,
// concurrent writes to keys of many buckets have their followers'
// acknowledgements served while other groups' log writes are being
// synced (the counter moves), and every write reads back.
func TestAcksServedDuringSync(t *testing.T) {
	var mu sync.Mutex
	regs := map[uint64]*prometheus.Registry{}
	c := Start(t, Options{Nodes: 3, NodeConfig: func(id uint64, cfg *kv.Config) {
		reg := prometheus.NewRegistry()
		mu.Lock()
		regs[id] = reg
		mu.Unlock()
		cfg.Registerer = reg
		cfg.FS = slowSyncFS{FS: cfg.FS, delay: 3 * time.Millisecond}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const writers, writes = 16, 15
	nodes := c.Nodes()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Go(func() {
			n := nodes[g%len(nodes)]
			for i := range writes {
				key, value := fmt.Appendf(nil, "w%02d/k%02d", g, i), fmt.Appendf(nil, "v%d", i)
				if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
					return n.Put(ctx, &ocpb.PutRequest{Key: key, Value: value})
				}); err != nil {
					errs <- fmt.Errorf("put %s: %w", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for g := range writers {
		for i := range writes {
			key := fmt.Appendf(nil, "w%02d/k%02d", g, i)
			resp, err := On(ctx, c.Primary(), func() (*ocpb.GetResponse, error) {
				return c.Primary().Get(ctx, &ocpb.GetRequest{Key: key})
			})
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			if want := fmt.Sprintf("v%d", i); string(resp.GetKv().GetValue()) != want {
				t.Fatalf("get %s = %q, want %q", key, resp.GetKv().GetValue(), want)
			}
		}
	}
	served := 0.0
	mu.Lock()
	defer mu.Unlock()
	for id, reg := range regs {
		families, err := reg.Gather()
		if err != nil {
			t.Fatalf("node %d metrics: %v", id, err)
		}
		for _, f := range families {
			if f.GetName() == "opencluster_raft_acks_served_during_sync_total" {
				served += f.GetMetric()[0].GetCounter().GetValue()
			}
		}
	}
	if served == 0 {
		t.Fatalf("no acknowledgement served during a sync over %d concurrent writes with 3ms fsyncs", writers*writes)
	}
	t.Logf("%v acknowledgements served during syncs", served)
}
