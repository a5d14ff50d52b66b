package jepsen

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Verdict is a checker's judgement of a history.
type Verdict int

const (
	// Inconclusive: too few successful operations, or the checker ran out
	// of time. Never a pass.
	Inconclusive Verdict = iota
	// Valid: the history satisfies the checked property.
	Valid
	// Invalid: the history shows an anomaly.
	Invalid
)

// String returns VALID, INVALID or INCONCLUSIVE.
func (v Verdict) String() string {
	switch v {
	case Valid:
		return "VALID"
	case Invalid:
		return "INVALID"
	}
	return "INCONCLUSIVE"
}

// MarshalJSON writes the verdict as its string.
func (v Verdict) MarshalJSON() ([]byte, error) { return json.Marshal(v.String()) }

// UnmarshalJSON reads a verdict written by MarshalJSON.
func (v *Verdict) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	switch s {
	case "VALID":
		*v = Valid
	case "INVALID":
		*v = Invalid
	case "INCONCLUSIVE":
		*v = Inconclusive
	default:
		return fmt.Errorf("%w: verdict %q", ErrBadHistory, s)
	}
	return nil
}

// Combine returns the verdict of several checkers: Invalid if any is,
// else Inconclusive if any is, else Valid. No verdicts at all are
// Inconclusive.
func Combine(vs ...Verdict) Verdict {
	if len(vs) == 0 {
		return Inconclusive
	}
	out := Valid
	for _, v := range vs {
		switch {
		case v == Invalid:
			return Invalid
		case v == Inconclusive:
			out = Inconclusive
		}
	}
	return out
}

// maxAnomalies bounds the anomalies a Result lists; the rest are counted.
const maxAnomalies = 20

// Result is one checker's judgement.
type Result struct {
	Checker string  `json:"checker"`
	Verdict Verdict `json:"verdict"`
	// Anomalies explain an Invalid verdict, at most maxAnomalies of them.
	Anomalies []string `json:"anomalies,omitempty"`
	// MoreAnomalies counts anomalies left out of Anomalies.
	MoreAnomalies int `json:"more_anomalies,omitempty"`
	// Reason explains an Inconclusive verdict.
	Reason string `json:"reason,omitempty"`
	// Stats are the checker's counts (operations checked, keys, holds…).
	Stats map[string]int64 `json:"stats,omitempty"`
	// Notes are the checker's measurements for people (lease takeover
	// latencies).
	Notes []string `json:"notes,omitempty"`
	// Files are artefacts the checker wrote, relative to the run directory.
	Files   []string      `json:"files,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// anomaly adds an anomaly and makes the result Invalid.
func (r *Result) anomaly(format string, args ...any) {
	r.Verdict = Invalid
	if len(r.Anomalies) >= maxAnomalies {
		r.MoreAnomalies++
		return
	}
	r.Anomalies = append(r.Anomalies, fmt.Sprintf(format, args...))
}

// requireOK makes a result without anomalies Inconclusive when a count
// of successful operations is below min (invariant 4).
func (r *Result) requireOK(what string, got int64, min int) {
	if r.Verdict == Invalid || got >= int64(min) {
		return
	}
	r.Verdict = Inconclusive
	reason := fmt.Sprintf("only %d %s (need %d)", got, what, min)
	if r.Reason == "" {
		r.Reason = reason
	} else {
		r.Reason += "; " + reason
	}
}

// statsLine renders the stats as "k v" pairs in key order.
func (r *Result) statsLine() string {
	keys := make([]string, 0, len(r.Stats))
	for k := range r.Stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Stats[k]))
	}
	return strings.Join(parts, "  ")
}
