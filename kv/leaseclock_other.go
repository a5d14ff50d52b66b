//go:build !linux

package kv

import "time"

var leaseEpochStart = time.Now()

// leaseNow reads the clock leases are measured by: the monotonic clock
// (on Linux, CLOCK_BOOTTIME; see leaseclock_linux.go).
func leaseNow() time.Duration { return time.Since(leaseEpochStart) }
