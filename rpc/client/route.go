package client

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/opencluster/opencluster/bucket"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Routing. A request about one key or lock name goes straight to its
// bucket's leader when the client knows it: the client keeps the
// placement (bucket count, each bucket's leader address) from Status,
// refreshes it in the background when it is older than
// placementMaxAge or a call met Unavailable, and otherwise sends to its
// current endpoint, which forwards. Routing is an optimisation only: any
// node serves any request.

// placementMaxAge is how long a fetched placement is used before a
// background refresh.
const placementMaxAge = 5 * time.Second

// placement is a snapshot of where buckets are led.
type placement struct {
	buckets int
	leaders []string // gRPC address per bucket ("" unknown)
	fetched time.Time
}

type router struct {
	mu         sync.Mutex
	table      *placement
	refreshing bool
	stale      bool // a call met Unavailable: refresh at the next chance
	// extra holds connections to leaders that are not among the
	// configured endpoints, by address.
	extra map[string]*endpoint
}

// leaderEndpoint returns the endpoint of key's bucket leader, or nil when
// unknown. It starts a background refresh of a stale or missing placement.
func (c *Client) leaderEndpoint(key []byte) *endpoint {
	r := &c.route
	r.mu.Lock()
	t := r.table
	if (t == nil || r.stale || time.Since(t.fetched) > placementMaxAge) && !r.refreshing && !c.closed() {
		r.refreshing = true
		c.bg.Add(1)
		go func() { defer c.bg.Done(); c.refreshPlacement() }()
	}
	r.mu.Unlock()
	if t == nil || t.buckets == 0 {
		return nil
	}
	addr := t.leaders[bucket.Of(key, t.buckets)]
	if addr == "" {
		return nil
	}
	return c.endpointFor(addr)
}

// markStale asks for a placement refresh (a routed call met Unavailable).
func (c *Client) markStale() {
	c.route.mu.Lock()
	c.route.stale = true
	c.route.mu.Unlock()
}

// endpointFor returns a configured endpoint with addr, or a connection of
// its own to it.
func (c *Client) endpointFor(addr string) *endpoint {
	for _, e := range c.endpoints {
		if e.addr == addr {
			return e
		}
	}
	r := &c.route
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.extra[addr]; ok {
		return e
	}
	if c.closed() {
		return nil
	}
	conn, err := grpc.NewClient(addr, c.dialOpts...)
	if err != nil {
		return nil
	}
	e := newEndpoint(addr, conn)
	if r.extra == nil {
		r.extra = make(map[string]*endpoint)
	}
	r.extra[addr] = e
	return e
}

// refreshPlacement fetches Status from the current endpoint and installs
// the placement it describes.
func (c *Client) refreshPlacement() {
	defer func() {
		c.route.mu.Lock()
		c.route.refreshing = false
		c.route.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(c.bgCtx, 2*time.Second)
	defer cancel()
	_, e := c.current()
	st, err := e.cluster.Status(ctx, &ocpb.StatusRequest{})
	if err != nil {
		return
	}
	addrs := make(map[string]string, len(st.GetMembers()))
	for _, m := range st.GetMembers() {
		if m.GetAlive() {
			addrs[m.GetId()] = m.GetAddr()
		}
	}
	t := &placement{buckets: int(st.GetBucketCount()), fetched: time.Now()}
	t.leaders = make([]string, t.buckets)
	for _, b := range st.GetBuckets() {
		if int(b.GetBucket()) < t.buckets {
			t.leaders[b.GetBucket()] = addrs[b.GetLeader()]
		}
	}
	c.route.mu.Lock()
	c.route.table, c.route.stale = t, false
	c.route.mu.Unlock()
}

// closeRoutes closes the connections routing opened.
func (c *Client) closeRoutes() {
	c.route.mu.Lock()
	defer c.route.mu.Unlock()
	for addr, e := range c.route.extra {
		_ = e.conn.Close()
		delete(c.route.extra, addr)
	}
}
