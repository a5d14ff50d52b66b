package jepsen

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func TestDropRuleExprs(t *testing.T) {
	exprs := dropExprs(nodeAddr(1), nodeAddr(2))
	var payloads []*expr.Payload
	var cmps [][]byte
	var verdict *expr.Verdict
	hasCounter := false
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Payload:
			payloads = append(payloads, e)
		case *expr.Cmp:
			if e.Op != expr.CmpOpEq || e.Register != 1 {
				t.Errorf("cmp %+v", e)
			}
			cmps = append(cmps, e.Data)
		case *expr.Counter:
			hasCounter = true
		case *expr.Verdict:
			verdict = e
		case *expr.Meta:
			if e.Key != expr.MetaKeyIIFNAME {
				t.Errorf("meta %+v", e)
			}
		default:
			t.Errorf("unexpected expression %T", e)
		}
	}
	if len(payloads) != 2 || payloads[0].Offset != 12 || payloads[1].Offset != 16 ||
		payloads[0].Len != 4 || payloads[0].Base != expr.PayloadBaseNetworkHeader {
		t.Errorf("payloads %+v %+v: want saddr (12) then daddr (16), 4 bytes of the network header", payloads[0], payloads[1])
	}
	want := [][]byte{append([]byte("lo"), make([]byte, 14)...), {127, 0, 0, 11}, {127, 0, 0, 12}}
	if len(cmps) != 3 {
		t.Fatalf("cmps %v", cmps)
	}
	for i := range want {
		if !bytes.Equal(cmps[i], want[i]) {
			t.Errorf("cmp %d data %v, want %v", i, cmps[i], want[i])
		}
	}
	if verdict == nil || verdict.Kind != expr.VerdictDrop || !hasCounter {
		t.Errorf("rule must count and drop: %v", exprs)
	}
	if _, ok := exprs[len(exprs)-1].(*expr.Verdict); !ok {
		t.Error("the verdict must come last")
	}
	// Every cut direction becomes one rule.
	g := completeGrudge([]int{1}, []int{2, 3})
	if got := g.Links(); !slices.Equal(got, []Link{{1, 2}, {1, 3}, {2, 1}, {3, 1}}) {
		t.Errorf("links %v", got)
	}
}

// hostHasTable reports whether this namespace has the harness's table.
func hostHasTable(t *testing.T) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == nftTableName {
			return true
		}
	}
	return false
}

// TestNFTPartitionInPrivateNetNS cuts real links with nftables: the test
// re-executes itself in a private network namespace (as jepsen run does)
// and checks there that cut directions drop TCP and UDP between node
// addresses, that other links and established connections behave as in
// a real partition, and that healing restores everything. The host's
// packet filter is never touched.
func TestNFTPartitionInPrivateNetNS(t *testing.T) {
	if InPrivateNetNS() {
		nftPartitionInside(t)
		return
	}
	if _, err := NewNFTNet(); !errors.Is(err, ErrNoNetNS) {
		t.Fatalf("NewNFTNet outside a private namespace: %v, want ErrNoNetNS", err)
	}
	if os.Geteuid() == 0 && hostHasTable(t) {
		t.Fatalf("the host already has table %s", nftTableName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	code, err := RunInPrivateNetNS(ctx, os.Args[0], []string{"-test.run=^TestNFTPartitionInPrivateNetNS$", "-test.v"}, nil, &out, &out)
	if errors.Is(err, ErrNoNetNS) && os.Geteuid() != 0 {
		t.Skipf("partitions need CAP_SYS_ADMIN and CAP_NET_ADMIN (run as root): %v", err)
	}
	t.Logf("in the private namespace:\n%s", out.String())
	if err != nil || code != 0 || !strings.Contains(out.String(), "--- PASS: TestNFTPartitionInPrivateNetNS") {
		t.Fatalf("in the private namespace: exit %d, %v", code, err)
	}
	if os.Geteuid() == 0 && hostHasTable(t) {
		t.Fatal("the partition leaked into the host's packet filter")
	}
}

func nftPartitionInside(t *testing.T) {
	if err := PreparePrivateNetNS(); err != nil {
		t.Fatal(err)
	}
	n, err := NewNFTNet()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	const port = 7999
	addr := func(node int) string { return net.JoinHostPort(NodeIP(node), strconv.Itoa(port)) }
	var tcp []net.Listener
	udp := map[int]net.PacketConn{}
	for node := 1; node <= 3; node++ {
		l, err := net.Listen("tcp", addr(node))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		tcp = append(tcp, l)
		u, err := net.ListenPacket("udp", addr(node))
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		udp[node] = u
	}
	// reach reports whether a TCP handshake from one node address to
	// another completes (the kernel answers from the listen backlog).
	reach := func(from, to int) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: nodeAddr(from)}, Timeout: 300 * time.Millisecond}
		c, err := d.Dial("tcp", addr(to))
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}
	// datagram reports whether a UDP datagram from one node gets through.
	datagram := func(from, to int) bool {
		msg := []byte("from n" + strconv.Itoa(from))
		if _, err := udp[from].WriteTo(msg, udp[to].LocalAddr()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		_ = udp[to].SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			k, _, err := udp[to].ReadFrom(buf)
			if err != nil {
				return false
			}
			if bytes.Equal(buf[:k], msg) {
				return true
			}
		}
	}
	check := func(stage string, want map[Link]bool) {
		t.Helper()
		for from := 1; from <= 3; from++ {
			for to := 1; to <= 3; to++ {
				if from == to {
					continue
				}
				w, ok := want[Link{from, to}]
				if !ok {
					w = true
				}
				if got := reach(from, to); got != w {
					t.Errorf("%s: TCP n%d→n%d reachable %v, want %v", stage, from, to, got, w)
				}
			}
		}
	}
	check("before", nil)

	// An established connection n1→n2, to see it stall.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: nodeAddr(1)}}
	c, err := d.Dial("tcp", addr(2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The backlog also holds the probes' connections: find c's.
	var s net.Conn
	for s == nil {
		a, err := tcp[1].Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if a.RemoteAddr().String() == c.LocalAddr().String() {
			s = a
		}
	}

	ctx := context.Background()
	if err := n.Partition(ctx, completeGrudge([]int{1}, []int{2})); err != nil {
		t.Fatal(err)
	}
	check("n1 | n2", map[Link]bool{{1, 2}: false, {2, 1}: false})
	if datagram(1, 2) || datagram(2, 1) || !datagram(1, 3) || !datagram(3, 2) {
		t.Error("n1 | n2: UDP between n1 and n2 must be dropped, and only there")
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if k, err := s.Read(make([]byte, 1)); err == nil {
		t.Errorf("established connection still delivers (%d bytes) across the cut", k)
	}

	// A new partition replaces the old one: now only n3→n1 is cut, which
	// breaks TCP both ways (the handshake's answer is lost) but lets UDP
	// through from n1 to n3.
	if err := n.Partition(ctx, Grudge{1: {3}}); err != nil {
		t.Fatal(err)
	}
	check("n3>n1", map[Link]bool{{3, 1}: false, {1, 3}: false})
	if datagram(3, 1) || !datagram(1, 3) || !datagram(1, 2) {
		t.Error("n3>n1: UDP must be dropped from n3 to n1 only")
	}

	dropped, err := n.Heal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dropped == 0 {
		t.Error("heal reports no dropped packets")
	}
	t.Logf("dropped %d packets", dropped)
	check("healed", nil)
	if !datagram(3, 1) || !datagram(2, 1) {
		t.Error("healed: UDP still dropped")
	}
	// The stalled connection resumes: TCP retransmits the byte.
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err != nil {
		t.Errorf("established connection after heal: %v", err)
	}
	if hostHasTable(t) {
		t.Error("table left after Heal")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}
