package ts

import (
	"fmt"
	"time"
)

// LogicalBits is the number of low bits holding the logical counter.
const LogicalBits = 18

// Timestamp is a cluster timestamp: physical ms << LogicalBits | logical.
type Timestamp uint64

// FromTime returns the first timestamp of the millisecond t falls in.
func FromTime(t time.Time) Timestamp {
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	return Timestamp(uint64(ms) << LogicalBits)
}

// FromDuration converts a duration to timestamp units (whole milliseconds).
func FromDuration(d time.Duration) Timestamp {
	return Timestamp(uint64(d.Milliseconds()) << LogicalBits)
}

// Physical returns the wall-clock time the timestamp was taken at.
func (t Timestamp) Physical() time.Time {
	return time.UnixMilli(int64(uint64(t) >> LogicalBits)).UTC()
}

// Logical returns the logical counter.
func (t Timestamp) Logical() uint64 { return uint64(t) & (1<<LogicalBits - 1) }

func (t Timestamp) String() string {
	if t == 0 {
		return "0"
	}
	return fmt.Sprintf("%d(%s+%d)", uint64(t), t.Physical().Format("15:04:05.000"), t.Logical())
}
