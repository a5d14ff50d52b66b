package flowcontrol

import "google.golang.org/grpc"

// StreamWindow is how many bytes one stream may receive ahead of its
// reader: a whole snapshot chunk (1 MiB and its last value) in the usual
// case. TiKV's default is the same.
const StreamWindow = 2 << 20

// ConnWindow is how many bytes a whole connection may receive ahead of its
// readers: room for eight streams sending at once at their full window.
// It bounds what a peer can make this process buffer, as the estimated
// window did (gRPC lets it grow to 16 MiB).
const ConnWindow = 16 << 20

// ServerOptions returns the window options of a grpc.Server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(StreamWindow),
		grpc.InitialConnWindowSize(ConnWindow),
	}
}

// DialOptions returns the window options of a grpc.ClientConn.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(StreamWindow),
		grpc.WithInitialConnWindowSize(ConnWindow),
	}
}
