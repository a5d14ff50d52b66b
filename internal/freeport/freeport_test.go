package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPickIsBelowTheEphemeralRangeAndFree(t *testing.T) {
	high := ephemeralStart()
	for range 20 {
		port, err := Pick("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if port < lowest || port >= high {
			t.Fatalf("picked %d, want it in [%d, %d)", port, lowest, high)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("picked port %d is not free: %v", port, err)
		}
		_ = l.Close()
	}
}

func TestPickSkipsAPortTakenOnAnyHost(t *testing.T) {
	// A port held on one host is not free for a pick on both, and is
	// still free on the other alone.
	port, err := Pick("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	held, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d was not free on 127.0.0.2: %v", port, err)
	}
	defer held.Close()
	if err := freeOn([]string{"127.0.0.1", "127.0.0.2"}, port); err == nil {
		t.Fatalf("port %d held on 127.0.0.2 looks free on both hosts", port)
	}
	if err := freeOn([]string{"127.0.0.1"}, port); err != nil {
		t.Fatalf("port %d held only on 127.0.0.2 looks taken on 127.0.0.1: %v", port, err)
	}
}

func TestParseRangeStart(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"32768\t60999\n", 32768},
		{"40000 50000", 40000},
		{"", defaultEphemeralStart},
		{"x 60999", defaultEphemeralStart},
		{"70000 80000", defaultEphemeralStart},
		{"1 2 3", defaultEphemeralStart},
	} {
		if got := parseRangeStart(c.in); got != c.want {
			t.Errorf("parseRangeStart(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestPickWithoutHost(t *testing.T) {
	if _, err := Pick(); err == nil {
		t.Fatal("Pick() with no host succeeded")
	}
}
