// Package flowcontrol holds the HTTP/2 flow-control windows of every gRPC
// connection OpenCluster opens or accepts: client to server, node to node
// (Raft, forwarded requests) and the server's side of both.
//
// gRPC sizes its windows by bandwidth-delay-product estimation unless they
// are set: every batch of data that arrives on a connection starts a PING
// round to measure it, and the growing window is announced in
// WINDOW_UPDATE frames. OpenCluster's traffic is many small messages (a
// put, its Raft append, the acknowledgement), so under load those control
// frames were as many as the messages themselves: a put on three nodes
// cost about 13 read and write calls across the servers, against about 6
// with fixed windows (docs/performance.md). Fixed windows turn the
// estimation off.
//
// Invariant: both ends of every connection between servers, and between
// the Go client and a server, set the windows, so that neither side
// estimates (a PING from the other end costs a read and a write here too).
// The Jepsen harness's own connections (black-box: it may not import this
// package) and the client's test fake keep gRPC's defaults.
package flowcontrol
