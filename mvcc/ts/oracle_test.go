package ts

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestOracleMonotonicAcrossResets checks invariants 1 and 2 of the package:
// timestamps never repeat or go back, even when the clock goes backwards and
// leadership moves (Reset from the persisted bound).
func TestOracleMonotonicAcrossResets(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	now := time.Unix(1_700_000_000, 0)
	o := NewOracle(time.Second)
	persisted := Timestamp(0)
	var last Timestamp
	for i := 0; i < 100_000; i++ {
		switch r := rng.IntN(100); {
		case r < 5: // clock jumps back up to 2s (skew, NTP step)
			now = now.Add(-time.Duration(rng.IntN(2000)) * time.Millisecond)
		case r < 30:
			now = now.Add(time.Duration(rng.IntN(5)) * time.Millisecond)
		case r < 31: // leadership change: the new leader only knows the persisted bound
			o = NewOracle(time.Second)
			o.Reset(persisted)
		}
		if b, ok := o.NeedBound(now); ok {
			persisted = b
			o.SetBound(b)
		}
		got, ok := o.Next(now, 1+rng.IntN(3))
		if !ok {
			t.Fatalf("step %d: Next refused right after the bound was raised", i)
		}
		if got <= last {
			t.Fatalf("step %d: timestamp %s not above previous %s", i, got, last)
		}
		if o.Last() > persisted {
			t.Fatalf("step %d: issued %s above persisted bound %s", i, o.Last(), persisted)
		}
		last = o.Last()
	}
}

func TestOracleRefusesPastBound(t *testing.T) {
	o := NewOracle(time.Second)
	now := time.Unix(1_700_000_000, 0)
	if _, ok := o.Next(now, 1); ok {
		t.Fatal("an oracle with no persisted bound issued a timestamp")
	}
	b, ok := o.NeedBound(now)
	if !ok {
		t.Fatal("NeedBound = false with no bound")
	}
	o.SetBound(b)
	first, ok := o.Next(now, 1)
	if !ok || first != FromTime(now) {
		t.Fatalf("Next = %s, %v; want %s", first, ok, FromTime(now))
	}
	if _, ok := o.Next(now.Add(2*time.Second), 1); ok {
		t.Fatal("issued a timestamp past the bound")
	}
}

func TestTimestampPhysical(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123)
	ts := FromTime(now) + 7
	if !ts.Physical().Equal(now) || ts.Logical() != 7 {
		t.Fatalf("round trip: %s -> %s logical %d", now, ts.Physical(), ts.Logical())
	}
}
