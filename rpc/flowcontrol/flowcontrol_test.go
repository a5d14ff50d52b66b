package flowcontrol

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// frameCounter counts the HTTP/2 frames one end of a connection reads, by
// type: it parses a copy of every byte read (after the client preface, on
// the server's end).
type frameCounter struct {
	mu     sync.Mutex
	pings  int // PINGs that are not acknowledgements
	window int // WINDOW_UPDATE frames
	data   int
}

type countingConn struct {
	net.Conn
	w *io.PipeWriter
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		_, _ = c.w.Write(p[:n])
	}
	return n, err
}

func (c *countingConn) Close() error {
	_ = c.w.Close()
	return c.Conn.Close()
}

type countingListener struct {
	net.Listener
	fc *frameCounter
	wg *sync.WaitGroup
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.fc.count(l.wg, conn, true), nil
}

// count returns conn, counting the frames read from it.
func (fc *frameCounter) count(wg *sync.WaitGroup, conn net.Conn, server bool) net.Conn {
	r, w := io.Pipe()
	wg.Go(func() { fc.parse(r, server) })
	return &countingConn{Conn: conn, w: w}
}

func (fc *frameCounter) parse(r *io.PipeReader, server bool) {
	defer func() { _ = r.Close() }()
	if server {
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(r, preface); err != nil || !bytes.Equal(preface, []byte(http2.ClientPreface)) {
			return
		}
	}
	fr := http2.NewFramer(io.Discard, r)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		fc.mu.Lock()
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				fc.pings++
			}
		case *http2.WindowUpdateFrame:
			fc.window++
		case *http2.DataFrame:
			fc.data++
		}
		fc.mu.Unlock()
	}
}

// controlFrames runs calls small unary RPCs on one connection and returns
// the frames the server read (toServer) and the client read (toClient).
func controlFrames(t *testing.T, calls int, sopts []grpc.ServerOption, dopts []grpc.DialOption) (toServer, toClient *frameCounter) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	toServer, toClient = &frameCounter{}, &frameCounter{}
	srv := grpc.NewServer(sopts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	wg.Go(func() { _ = srv.Serve(countingListener{Listener: lis, fc: toServer, wg: &wg}) })
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return toClient.count(&wg, conn, false), nil
	}
	conn, err := grpc.NewClient(lis.Addr().String(), append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial)}, dopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	hc := healthpb.NewHealthClient(conn)
	for range calls {
		if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.Close()
	srv.Stop()
	wg.Wait()
	return toServer, toClient
}

// TestFixedWindowsSendNoControlFrames checks that with the windows set on
// both ends neither end sends a PING or, beyond the one that announces its
// connection window, a WINDOW_UPDATE while the client makes small
// requests; and that without them gRPC's estimation would (so the check
// tells the two apart: each end sent about one of each per call when this
// was written).
func TestFixedWindowsSendNoControlFrames(t *testing.T) {
	const calls = 200
	toServer, toClient := controlFrames(t, calls, ServerOptions(), DialOptions())
	for _, c := range []struct {
		sender string
		fc     *frameCounter
	}{{"client", toServer}, {"server", toClient}} {
		if c.fc.data < calls {
			t.Fatalf("%d DATA frames from the %s for %d calls: the counter does not see the traffic", c.fc.data, c.sender, calls)
		}
		if c.fc.pings != 0 || c.fc.window > 1 {
			t.Errorf("with fixed windows the %s sent %d PINGs and %d WINDOW_UPDATEs over %d calls, want 0 and at most 1",
				c.sender, c.fc.pings, c.fc.window, calls)
		}
	}
	toServer, toClient = controlFrames(t, calls, nil, nil)
	if toServer.pings == 0 || toClient.pings == 0 {
		t.Errorf("with gRPC's default windows the client sent %d PINGs and the server %d over %d calls, want some from both: "+
			"bandwidth estimation no longer pings, and this package may be needless", toServer.pings, toClient.pings, calls)
	}
	t.Logf("default windows: the client sent %d PINGs and %d WINDOW_UPDATEs, the server %d and %d, over %d calls",
		toServer.pings, toServer.window, toClient.pings, toClient.window, calls)
}
