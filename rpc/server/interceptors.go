package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// unaryInterceptor recovers a panic into codes.Internal, then records the
// request's metrics and debug log line. It never looks at the request or
// the response, so it cannot log a code or a value.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, s.recovered(info.FullMethod, r)
		}
		s.observe(ctx, info.FullMethod, false, start, err)
	}()
	return handler(ctx, req)
}

// streamInterceptor is unaryInterceptor for streams (KeepAlive, health
// Watch, reflection). The stream counts once, when it ends.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(info.FullMethod, r)
		}
		s.observe(ss.Context(), info.FullMethod, true, start, err)
	}()
	return handler(srv, ss)
}

// observe records a finished request: the counter by method and code, the
// latency of unary requests (a stream lives as long as its client wants),
// and one debug line with method, code, duration, peer and, for a failed
// request, the redacted status message.
func (s *Server) observe(ctx context.Context, method string, stream bool, start time.Time, err error) {
	elapsed := time.Since(start)
	st := status.Convert(err)
	if s.metrics != nil {
		s.metrics.requests.WithLabelValues(method, st.Code().String()).Inc()
		if !stream {
			s.metrics.latency.WithLabelValues(method).Observe(elapsed.Seconds())
		}
	}
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", st.Code().String()),
		slog.Duration("duration", elapsed),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if st.Code() != codes.OK {
		attrs = append(attrs, slog.String("error", redact(st.Message())))
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "rpc", attrs...)
}

// stack returns the current goroutine's stack for a panic log line.
func stack() string { return string(debug.Stack()) }

// metrics are the request metrics, registered with Config.Registerer.
type metrics struct {
	// requests counts finished requests by full method and status code.
	requests *prometheus.CounterVec
	// latency times unary requests by full method.
	latency *prometheus.HistogramVec
	// panics counts recovered panics by full method.
	panics *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opencluster_rpc_requests_total",
			Help: "Finished gRPC requests (streams count once, when they end), by full method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opencluster_rpc_request_duration_seconds",
			Help: "Latency of unary gRPC requests, including waits for locks, by full method.",
			// Lock waits reach minutes; the low end resolves a local read.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"method"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opencluster_rpc_panics_total",
			Help: "Panics recovered while serving gRPC requests, by full method.",
		}, []string{"method"}),
	}
	cs := []prometheus.Collector{m.requests, m.latency, m.panics}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("server: registering metrics: %w", err)
		}
	}
	return m, nil
}
