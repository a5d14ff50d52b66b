package kv

import (
	"time"

	"golang.org/x/sys/unix"
)

// leaseNow reads the clock leases are measured by: CLOCK_BOOTTIME, which,
// unlike the monotonic clock behind time.Now, keeps counting while the
// machine is suspended (a laptop lid, some VM pauses and migrations). A
// leader frozen that way between its lease check and its read must see
// the time pass when it wakes, as its followers did.
func leaseNow() time.Duration {
	var t unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &t); err != nil {
		panic("kv: CLOCK_BOOTTIME: " + err.Error()) // present since Linux 2.6.39
	}
	return time.Duration(t.Nano())
}
