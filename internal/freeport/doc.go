// Package freeport picks TCP ports for the server processes the bench and
// the Jepsen harness start.
//
// A port is picked by listening on it and closing the listener; the
// process that will serve it binds it later. A port the kernel hands out
// (listening on port 0) comes from the ephemeral range, the same range
// that outgoing connections take their source ports from, so in between
// any connection on the machine may take it, and the server then fails
// with "address already in use" (seen with etcd under the bench). Ports
// are therefore picked outside the ephemeral range (below it, or above it
// where it starts low), where only a listener asking for that very port
// can take them.
//
// Invariant: a picked port is outside the ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range, or Linux's default where that
// cannot be read), was free for TCP and UDP on every host asked for, and
// was not picked before by this process.
package freeport
