package freeport

import (
	"net"
	"reflect"
	"strconv"
	"testing"
)

func TestPickIsOutsideTheEphemeralRangeAndFree(t *testing.T) {
	start, end := ephemeralRange()
	seen := make(map[int]bool)
	for range 20 {
		port, err := Pick("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if port < lowest || (port >= start && port <= end) {
			t.Fatalf("picked %d, want it at or above %d and outside %d-%d", port, lowest, start, end)
		}
		if seen[port] {
			t.Fatalf("picked %d twice", port)
		}
		seen[port] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("picked port %d is not free: %v", port, err)
		}
		_ = l.Close()
	}
}

func TestPickSpanLeavesEveryPortFree(t *testing.T) {
	port, err := PickSpan(2, "127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1", "127.0.0.2"} {
		for p := port; p < port+2; p++ {
			addr := net.JoinHostPort(h, strconv.Itoa(p))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("tcp %s of the span is not free: %v", addr, err)
			}
			_ = l.Close()
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				t.Fatalf("udp %s of the span is not free: %v", addr, err)
			}
			_ = c.Close()
		}
	}
}

func TestFreeOnSeesAPortTakenOnAnyHostOrProtocol(t *testing.T) {
	port, err := Pick("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	held, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s was not free: %v", addr, err)
	}
	if err := freeOn([]string{"127.0.0.1", "127.0.0.2"}, port, 1); err == nil {
		t.Fatalf("port %d held for tcp on 127.0.0.2 looks free on both hosts", port)
	}
	if err := freeOn([]string{"127.0.0.1"}, port, 1); err != nil {
		t.Fatalf("port %d held only on 127.0.0.2 looks taken on 127.0.0.1: %v", port, err)
	}
	_ = held.Close()
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("udp %s was not free: %v", addr, err)
	}
	defer udp.Close()
	if err := freeOn([]string{"127.0.0.2"}, port, 1); err == nil {
		t.Fatalf("port %d held for udp looks free", port)
	}
}

func TestCandidates(t *testing.T) {
	for _, c := range []struct {
		start, end, width int
		want              [][2]int
	}{
		{32768, 60999, 1, [][2]int{{10000, 32767}, {61000, 65535}}},
		{32768, 60999, 2, [][2]int{{10000, 32766}, {61000, 65534}}},
		{1024, 65535, 1, nil},
		{1024, 40000, 1, [][2]int{{40001, 65535}}},
		{5000, 9000, 1, [][2]int{{10000, 65535}}},
		{10001, 65535, 2, nil},
	} {
		if got := candidates(c.start, c.end, c.width); !reflect.DeepEqual(got, c.want) {
			t.Errorf("candidates(%d, %d, %d) = %v, want %v", c.start, c.end, c.width, got, c.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		in         string
		start, end int
	}{
		{"32768\t60999\n", 32768, 60999},
		{"40000 50000", 40000, 50000},
		{"", defaultEphemeralStart, defaultEphemeralEnd},
		{"x 60999", defaultEphemeralStart, defaultEphemeralEnd},
		{"50000 40000", defaultEphemeralStart, defaultEphemeralEnd},
		{"70000 80000", defaultEphemeralStart, defaultEphemeralEnd},
		{"1 2 3", defaultEphemeralStart, defaultEphemeralEnd},
	} {
		if s, e := parseRange(c.in); s != c.start || e != c.end {
			t.Errorf("parseRange(%q) = %d, %d, want %d, %d", c.in, s, e, c.start, c.end)
		}
	}
}

func TestPickRefusesBadInput(t *testing.T) {
	if _, err := Pick(); err == nil {
		t.Fatal("Pick() with no host succeeded")
	}
	if _, err := PickSpan(0, "127.0.0.1"); err == nil {
		t.Fatal("PickSpan(0) succeeded")
	}
}
