package kv

import "testing"

// TestFirstPassGate: a node tries every bucket at once while few tries
// fall short; once most do it locks in order, probing one Restrict in
// probeEvery, and it goes back to trying once the probes stop falling
// short.
func TestFirstPassGate(t *testing.T) {
	var g firstPassGate
	tries := func(calls int) int {
		n := 0
		for range calls {
			if g.try() {
				n++
			}
		}
		return n
	}
	if got := tries(100); got != 100 {
		t.Fatalf("uncontended: %d of 100 tried, want all", got)
	}
	for range 100 {
		g.observe(true)
	}
	if got := tries(8 * probeEvery); got != 8 {
		t.Fatalf("contended: %d of %d tried, want one in %d", got, 8*probeEvery, probeEvery)
	}
	for range 100 {
		g.observe(false)
	}
	if got := tries(100); got != 100 {
		t.Fatalf("contention gone: %d of 100 tried, want all", got)
	}
}
