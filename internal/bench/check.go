package bench

import (
	"fmt"
	"sync"
)

// maxReported bounds how many violations are kept for the report (all of
// them are counted).
const maxReported = 10

// exclusion checks mutual exclusion while a lock workload runs. Every
// client of a run lives in one process, so a holder's interval is known
// exactly from its own side: from the moment Lock returned to the moment
// it calls Unlock. Within that interval it believes it holds the lock; a
// grant to anyone else then is a violation. Fences must grow with every
// grant of a name, in the order the holders entered.
type exclusion struct {
	mu struct {
		sync.Mutex
		// names maps a lock name to its holder count and newest fence.
		// Invariant (unless a violation was recorded): held <= 1.
		names      map[string]*holding
		violations []string
		count      int
	}
}

type holding struct {
	held  int
	fence uint64
}

func newExclusion() *exclusion {
	x := &exclusion{}
	x.mu.names = map[string]*holding{}
	return x
}

// enter records a grant of name with fence (0: the system has no fences).
func (x *exclusion) enter(name string, fence uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	h := x.mu.names[name]
	if h == nil {
		h = &holding{}
		x.mu.names[name] = h
	}
	if h.held > 0 {
		x.violationLocked("lock %q granted while %d other holder(s) still held it", name, h.held)
	}
	h.held++
	if fence != 0 {
		if fence <= h.fence {
			x.violationLocked("lock %q granted with fence %d, not above the previous grant's %d", name, fence, h.fence)
		}
		h.fence = max(h.fence, fence)
	}
}

// exit records that a holder of name is about to unlock it.
func (x *exclusion) exit(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.mu.names[name].held--
}

// violation records a failed check (also used for the transfer total).
func (x *exclusion) violation(format string, args ...any) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.violationLocked(format, args...)
}

func (x *exclusion) violationLocked(format string, args ...any) {
	x.mu.count++
	if len(x.mu.violations) < maxReported {
		x.mu.violations = append(x.mu.violations, fmt.Sprintf(format, args...))
	}
}

// report returns the number of violations and the first few.
func (x *exclusion) report() (int, []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.mu.count, append([]string(nil), x.mu.violations...)
}
