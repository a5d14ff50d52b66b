package peer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/flowcontrol"
)

// queueBatches bounds each destination's queue of unsent batches.
const queueBatches = 1024

// Dialer returns gRPC dial options whose connections leave from host (the
// node's own address), so that partitions between node addresses work,
// with fixed flow-control windows (package flowcontrol).
func Dialer(host string) []grpc.DialOption {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, flowcontrol.DialOptions()...)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	}
	return opts
}

// Transport sends Raft messages to other nodes over gRPC (kv.Transport).
type Transport struct {
	log      *slog.Logger
	cluster  func() string          // the cluster id, once known
	localID  func() uint64          // this node's id, once known
	resolve  func(id uint64) string // a node's gRPC address
	dialOpts []grpc.DialOption

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		queues map[uint64]chan []*cmdpb.GroupMessage
		closed bool
	}
}

// TransportConfig configures a Transport.
type TransportConfig struct {
	Logger *slog.Logger
	// LocalHost is the host outgoing connections leave from.
	LocalHost string
	// ClusterID and LocalID are read when a batch is sent.
	ClusterID func() string
	LocalID   func() uint64
	// Resolve returns a node's gRPC address ("" if unknown: the batch is
	// dropped).
	Resolve func(id uint64) string
}

// NewTransport returns a Transport; Close stops its goroutines.
func NewTransport(cfg TransportConfig) *Transport {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Transport{log: cfg.Logger, cluster: cfg.ClusterID, localID: cfg.LocalID, resolve: cfg.Resolve, dialOpts: Dialer(cfg.LocalHost)}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.queues = make(map[uint64]chan []*cmdpb.GroupMessage)
	return t
}

// Send queues msgs for node to; a full queue drops them.
func (t *Transport) Send(to uint64, msgs []*cmdpb.GroupMessage) {
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return
	}
	q, ok := t.mu.queues[to]
	if !ok {
		q = make(chan []*cmdpb.GroupMessage, queueBatches)
		t.mu.queues[to] = q
		t.wg.Add(1)
		go func() { defer t.wg.Done(); t.run(to, q) }()
	}
	t.mu.Unlock()
	select {
	case q <- msgs:
	default:
	}
}

// Close stops every sender and waits for them.
func (t *Transport) Close() {
	t.mu.Lock()
	t.mu.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
}

// run owns the stream to one node: it (re)connects and sends batches,
// coalescing what queued up meanwhile into one.
func (t *Transport) run(to uint64, q chan []*cmdpb.GroupMessage) {
	// A stream lives on t.ctx: a failed Send has already ended it, and
	// closing conn ends any other.
	var (
		conn   *grpc.ClientConn
		addr   string
		stream cmdpb.Internal_RaftClient
	)
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for {
		var msgs []*cmdpb.GroupMessage
		select {
		case <-t.ctx.Done():
			return
		case msgs = <-q:
		}
	coalesce:
		for len(msgs) < 4096 {
			select {
			case more := <-q:
				msgs = append(msgs, more...)
			default:
				break coalesce
			}
		}
		if a := t.resolve(to); a != addr || conn == nil {
			stream = nil
			if conn != nil {
				_ = conn.Close()
				conn = nil
			}
			addr = a
			if addr == "" {
				continue
			}
			c, err := grpc.NewClient(addr, t.dialOpts...)
			if err != nil {
				t.log.Debug("raft transport: dial", "to", to, "addr", addr, "err", err)
				continue
			}
			conn = c
		}
		if stream == nil {
			s, err := cmdpb.NewInternalClient(conn).Raft(t.ctx)
			if err != nil {
				t.backoff()
				continue
			}
			stream = s
		}
		batch := &cmdpb.RaftBatch{From: t.localID(), To: to, ClusterId: t.cluster(), Messages: msgs}
		if err := stream.Send(batch); err != nil {
			t.log.Debug("raft transport: send", "to", to, "addr", addr, "err", err)
			stream = nil
			t.backoff()
		}
	}
}

// SendSnapshot streams a snapshot over its own connection (snapshots are
// rare and big; they must not hold up the Raft stream).
func (t *Transport) SendSnapshot(ctx context.Context, to uint64, header *cmdpb.GroupMessage, next func() ([]*cmdpb.SnapshotKV, error)) error {
	addr := t.resolve(to)
	if addr == "" {
		return fmt.Errorf("peer: no address for node %d", to)
	}
	conn, err := grpc.NewClient(addr, t.dialOpts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cmdpb.NewInternalClient(conn).Snapshot(ctx)
	if err != nil {
		return err
	}
	chunk := &cmdpb.SnapshotChunk{Header: &cmdpb.RaftBatch{
		From: t.localID(), To: to, ClusterId: t.cluster(), Messages: []*cmdpb.GroupMessage{header},
	}}
	for {
		kvs, err := next()
		if err != nil {
			return err
		}
		chunk.Kvs = kvs
		if err := stream.Send(chunk); err != nil {
			_, err = stream.CloseAndRecv() // the receiver's reason
			return err
		}
		if len(kvs) == 0 {
			break
		}
		chunk = &cmdpb.SnapshotChunk{}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func (t *Transport) backoff() {
	select {
	case <-t.ctx.Done():
	case <-time.After(50 * time.Millisecond):
	}
}
