package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port picked: above the ports services commonly
// configure.
const lowest = 10000

// highest is the highest TCP port.
const highest = 65535

// Linux's default ephemeral range.
const defaultEphemeralStart, defaultEphemeralEnd = 32768, 60999

// attempts bounds the ports tried before giving up.
const attempts = 100

// given holds every port this process has picked, so that two picks made
// before either server binds its port never return the same one.
var given = struct {
	sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}

// Pick returns a TCP port free on every host (IP addresses or names), below
// the ephemeral range.
func Pick(hosts ...string) (int, error) { return PickSpan(1, hosts...) }

// PickSpan returns the first of width consecutive ports, each free for TCP
// and UDP on every host (memberlist gossips over both on one port), outside
// the ephemeral range and not picked before by this process.
func PickSpan(width int, hosts ...string) (int, error) {
	if len(hosts) == 0 {
		return 0, errors.New("freeport: no host")
	}
	if width < 1 {
		return 0, fmt.Errorf("freeport: span of %d ports", width)
	}
	start, end := ephemeralRange()
	ranges := candidates(start, end, width)
	if len(ranges) == 0 {
		return 0, fmt.Errorf("freeport: no span of %d ports above %d outside the ephemeral range %d-%d", width, lowest, start, end)
	}
	var lastErr error
	for range attempts {
		r := ranges[rand.IntN(len(ranges))]
		port := r[0] + rand.IntN(r[1]-r[0]+1)
		if lastErr = claim(hosts, port, width); lastErr == nil {
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

// candidates returns the inclusive ranges of first ports of a span of
// width outside [start, end] and at or above lowest: below the ephemeral
// range first, then above it (for hosts whose range starts low).
func candidates(start, end, width int) [][2]int {
	var out [][2]int
	if hi := min(start, highest+1) - width; hi >= lowest {
		out = append(out, [2]int{lowest, hi})
	}
	if lo := max(end+1, lowest); lo <= highest-width+1 {
		out = append(out, [2]int{lo, highest - width + 1})
	}
	return out
}

// claim checks that ports port..port+width-1 are free on every host and
// not given before, and records them as given.
func claim(hosts []string, port, width int) error {
	given.Lock()
	defer given.Unlock()
	for p := port; p < port+width; p++ {
		if given.ports[p] {
			return fmt.Errorf("port %d picked before", p)
		}
	}
	if err := freeOn(hosts, port, width); err != nil {
		return err
	}
	for p := port; p < port+width; p++ {
		given.ports[p] = true
	}
	return nil
}

// freeOn reports whether ports port..port+width-1 can be listened on for
// TCP and UDP at every host, by listening on all of them at once.
func freeOn(hosts []string, port, width int) error {
	var held []interface{ Close() error }
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for _, h := range hosts {
		for p := port; p < port+width; p++ {
			addr := net.JoinHostPort(h, strconv.Itoa(p))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			held = append(held, l)
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			held = append(held, c)
		}
	}
	return nil
}

// ephemeralRange returns the kernel's ephemeral port range.
func ephemeralRange() (start, end int) {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralStart, defaultEphemeralEnd
	}
	return parseRange(string(raw))
}

// parseRange parses ip_local_port_range ("32768\t60999\n"), or returns
// Linux's default range if it does not parse.
func parseRange(s string) (start, end int) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return defaultEphemeralStart, defaultEphemeralEnd
	}
	start, err1 := strconv.Atoi(f[0])
	end, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || start <= 0 || end < start || end > highest {
		return defaultEphemeralStart, defaultEphemeralEnd
	}
	return start, end
}
