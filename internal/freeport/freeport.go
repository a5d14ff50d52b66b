package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the lowest port picked: above the ports services commonly
// configure.
const lowest = 10000

// defaultEphemeralStart is where Linux's ephemeral range starts by default.
const defaultEphemeralStart = 32768

// attempts bounds the ports tried before giving up.
const attempts = 100

// Pick returns a TCP port free on every host (IP addresses or names), below
// the ephemeral range.
func Pick(hosts ...string) (int, error) {
	if len(hosts) == 0 {
		return 0, errors.New("freeport: no host")
	}
	high := ephemeralStart()
	if high <= lowest+1 {
		return 0, fmt.Errorf("freeport: the ephemeral range starts at %d, leaving no port above %d", high, lowest)
	}
	var lastErr error
	for range attempts {
		port := lowest + rand.IntN(high-lowest)
		if lastErr = freeOn(hosts, port); lastErr == nil {
			return port, nil
		}
	}
	return 0, fmt.Errorf("freeport: no port free on %s in %d tries, last: %w", strings.Join(hosts, ", "), attempts, lastErr)
}

// Addr returns host:port with a port Pick chose for host.
func Addr(host string) (string, error) {
	port, err := Pick(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// freeOn reports whether port can be listened on at every host, by
// listening on all of them at once.
func freeOn(hosts []string, port int) error {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for _, h := range hosts {
		l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		held = append(held, l)
	}
	return nil
}

// ephemeralStart returns the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralStart
	}
	return parseRangeStart(string(raw))
}

// parseRangeStart parses ip_local_port_range ("32768\t60999\n") and
// returns its start, or Linux's default start if it does not parse.
func parseRangeStart(s string) int {
	f := strings.Fields(s)
	if len(f) != 2 {
		return defaultEphemeralStart
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start <= 0 || start > 65535 {
		return defaultEphemeralStart
	}
	return start
}
