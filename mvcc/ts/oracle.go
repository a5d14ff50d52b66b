package ts

import "time"

// DefaultWindow is how far ahead of the clock the oracle persists its bound.
const DefaultWindow = 3 * time.Second

// Oracle allocates strictly increasing timestamps below a persisted bound.
// It is not safe for concurrent use; its owner serialises calls.
type Oracle struct {
	// Invariant: last <= bound whenever bound > 0.
	last  Timestamp
	bound Timestamp
	// window is how far ahead of now a new bound is set.
	window Timestamp
}

// NewOracle returns an oracle that issues nothing until Reset or SetBound.
func NewOracle(window time.Duration) *Oracle {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Oracle{window: FromDuration(window)}
}

// Reset starts a new leadership term from the persisted bound: every
// timestamp issued from now on exceeds it.
func (o *Oracle) Reset(persisted Timestamp) {
	o.last = persisted
	o.bound = persisted
}

// SetBound records that bound has been persisted. A smaller bound than the
// current one is ignored.
func (o *Oracle) SetBound(bound Timestamp) {
	if bound > o.bound {
		o.bound = bound
	}
}

// Bound returns the persisted bound.
func (o *Oracle) Bound() Timestamp { return o.bound }

// Last returns the last timestamp issued (or the reset point).
func (o *Oracle) Last() Timestamp { return o.last }

// NeedBound reports whether the bound should be raised at now, and to what:
// when less than half a window is left. The caller persists the bound and
// then calls SetBound.
func (o *Oracle) NeedBound(now time.Time) (Timestamp, bool) {
	next := max(o.last+1, FromTime(now))
	if o.bound >= next+o.window/2 {
		return 0, false
	}
	return next + o.window, true
}

// Next issues n consecutive timestamps and returns the first; ok is false
// (and nothing is issued) when they would pass the persisted bound.
func (o *Oracle) Next(now time.Time, n int) (first Timestamp, ok bool) {
	if n < 1 {
		n = 1
	}
	first = max(o.last+1, FromTime(now))
	lastTS := first + Timestamp(n-1)
	if lastTS > o.bound {
		return 0, false
	}
	o.last = lastTS
	return first, true
}
